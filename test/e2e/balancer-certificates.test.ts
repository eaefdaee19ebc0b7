/**
 * The TLS certificate expiry gauge of a real balancer (cdn.balancer.certificates):
 * certificates made with openssl, their notAfter read independently with Node's
 * X509Certificate, compared with what /metrics says nginx loaded and what is on
 * disk, through a renewal on disk and a reload.
 */
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import * as fs from 'node:fs';
import * as https from 'node:https';
import * as os from 'node:os';
import * as path from 'node:path';
import { isAlive } from '../../infra/targets/native/supervisor';
import { startBalancer, startFakeEdge, unexpectedErrors, type BalancerHandle, type FakeEdge } from './balancer-harness';

const METRIC = 'cdn_tls_certificate_not_after_seconds';

let edge: FakeEdge;
let balancer: BalancerHandle;
let plain: BalancerHandle;
let certDir: string;
let certFile: string;

/** A self-signed certificate valid for `days`, written over cert.pem / key.pem. */
function makeCertificate(days: number, cn: string): { notAfter: number; subject: string } {
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', String(days), '-subj', `/CN=${cn}`,
    '-keyout', path.join(certDir, 'key.pem'), '-out', certFile], { stdio: 'pipe' });
  const cert = new X509Certificate(fs.readFileSync(certFile));
  return { notAfter: Date.parse(cert.validTo) / 1000, subject: `/${cert.subject.replace(/\n/g, '/')}` };
}

/** The gauge's samples by source, e.g. { loaded: { value, subject, path } }. */
async function certificateSamples(b: BalancerHandle): Promise<Record<string, { value: number; subject: string; path: string }>> {
  const text = await (await fetch(`${b.internal}/metrics`)).text();
  const out: Record<string, { value: number; subject: string; path: string }> = {};
  for (const m of text.matchAll(new RegExp(`^${METRIC}\\{path="([^"]*)",subject="([^"]*)",source="([a-z]+)"\\} (\\S+)$`, 'gm'))) {
    out[m[3]] = { path: m[1], subject: m[2], value: Number(m[4]) };
  }
  return out;
}

function servedCertificate(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port, path: '/', servername: 'shop.example', rejectUnauthorized: false, agent: false }, (res) => {
      resolve((res.socket as import('node:tls').TLSSocket).getPeerCertificate().valid_to);
      res.resume();
    });
    req.on('error', reject);
    req.end();
  });
}

beforeAll(async () => {
  certDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cdn-certs-'));
  certFile = path.join(certDir, 'cert.pem');
  edge = await startFakeEdge('eu-1', 'eu');
}, 30000);

afterAll(async () => {
  const log = balancer ? balancer.errorLog() : '';
  await balancer?.stop();
  await plain?.stop();
  await edge?.stop();
  fs.rmSync(certDir, { recursive: true, force: true });
  expect(unexpectedErrors(log)).toEqual([]);
});

describe('TLS certificate expiry on /metrics', () => {
  let first: { notAfter: number; subject: string };

  test('the balancer exports the notAfter of the certificate it serves, loaded and on disk', async () => {
    first = makeCertificate(30, 'shop.example');
    balancer = await startBalancer(
      { regions: [{ name: 'eu', edges: 1 }], balancer: { tls: { cert: certFile, key: path.join(certDir, 'key.pem') } } },
      [edge],
    );
    const samples = await certificateSamples(balancer);
    expect(samples.loaded).toEqual({ path: certFile, subject: first.subject, value: first.notAfter });
    expect(samples.file).toEqual(samples.loaded);
    // ~30 days from now, to the second (openssl -days counts from the moment it signs)
    expect(Math.abs(first.notAfter - (Date.now() / 1000 + 30 * 86400))).toBeLessThan(120);
    expect(first.subject).toBe('/CN=shop.example');
  }, 30000);

  test('a renewal on disk shows at once as source="file"; "loaded" follows only after a reload, as nginx does', async () => {
    const renewed = makeCertificate(90, 'static.shop.example');
    const before = await certificateSamples(balancer);
    expect(before.loaded.value).toBe(first.notAfter);
    expect(before.file).toEqual({ path: certFile, subject: renewed.subject, value: renewed.notAfter });
    // nginx still serves the first certificate
    expect(Date.parse(await servedCertificate(balancer.port)) / 1000).toBe(first.notAfter);

    process.kill(balancer.svc.pid, 'SIGHUP');
    const deadline = Date.now() + 10000;
    let after = before;
    while (after.loaded.value !== renewed.notAfter && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      after = await certificateSamples(balancer);
    }
    expect(after.loaded).toEqual({ path: certFile, subject: renewed.subject, value: renewed.notAfter });
    expect(Date.parse(await servedCertificate(balancer.port)) / 1000).toBe(renewed.notAfter);
    expect(isAlive(balancer.svc.pid)).toBe(true);
  }, 30000);

  test('an unreadable file drops the "file" series (and logs one warning), the loaded one stays', async () => {
    const kept = fs.readFileSync(certFile);
    fs.writeFileSync(certFile, 'not a certificate\n');
    try {
      for (let i = 0; i < 3; i++) {
        const samples = await certificateSamples(balancer);
        expect(Object.keys(samples)).toEqual(['loaded']);
      }
      // said outright, so an alert can tell a missing file series from a quiet one
      expect(await (await fetch(`${balancer.internal}/metrics`)).text()).toContain(`cdn_tls_certificate_file_readable{path="${certFile}"} 0`);
    } finally {
      fs.writeFileSync(certFile, kept);
    }
    const warnings = balancer.errorLog().split('\n').filter((l) => l.includes(`certificates: ${certFile}: no PEM certificate found`));
    // once per worker at most, however many scrapes
    expect(warnings.length).toBeGreaterThanOrEqual(1);
    expect(warnings.length).toBeLessThanOrEqual(2);
    expect(Object.keys(await certificateSamples(balancer)).sort()).toEqual(['file', 'loaded']);
    expect(await (await fetch(`${balancer.internal}/metrics`)).text()).toContain(`cdn_tls_certificate_file_readable{path="${certFile}"} 1`);
  });

  test('without TLS there is no certificate gauge at all', async () => {
    plain = await startBalancer({ regions: [{ name: 'eu', edges: 1 }] }, [edge]);
    const text = await (await fetch(`${plain.internal}/metrics`)).text();
    expect(text).toContain('cdn_balancer_requests_total');
    expect(text).not.toContain(METRIC);
  }, 30000);
});
