/**
 * The edges' acknowledgements cross regions over TLS (cdn.redis connect_tls): real
 * nginx + Lua against a real redis-server with a TLS port, on the material the native
 * target makes with openssl (writeNativeRedisTls). The handshake must verify the
 * chain and the name, and a pooled connection must stay usable.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { SECRET_FILES } from '../infra/model/layout';
import { REDIS_TLS_SERVER_NAME } from '../infra/model/topology';
import { writeNativeRedisTls } from '../infra/targets/native/redis-tls';
import { startNginx } from '../test/support/nginx-lua';
import { freePort } from '../test/support/ports';
import { startRedis, type RedisHandle } from '../test/support/redis-server';

let material: string;
let otherCa: string;
let redis: RedisHandle;
let tlsPort: number;

beforeAll(async () => {
  material = fs.mkdtempSync(path.join(os.tmpdir(), 'cdn-redis-tls-'));
  otherCa = fs.mkdtempSync(path.join(os.tmpdir(), 'cdn-redis-tls-other-'));
  writeNativeRedisTls(material);
  writeNativeRedisTls(otherCa);
  const file = (name: keyof typeof SECRET_FILES) => path.join(material, SECRET_FILES[name]);
  tlsPort = await freePort();
  redis = await startRedis({ args: ['--tls-port', String(tlsPort), '--tls-auth-clients', 'no', '--tls-cert-file', file('redisTlsCert'), '--tls-key-file', file('redisTlsKey'), '--tls-ca-cert-file', file('redisTlsCa')] });
}, 30000);

afterAll(async () => {
  await redis?.stop();
  for (const d of [material, otherCa]) if (d) fs.rmSync(d, { recursive: true, force: true });
});

/** What an edge's nginx trusting `caDir`'s CA gets for two connect_tls calls in one request (the second from the pool), and its error log. */
async function acknowledgeTwice(caDir: string, serverName: string, port = tlsPort): Promise<{ out: string; log: string }> {
  const nginx = await startNginx(
    `        location = /run {
            content_by_lua_block {
                local redis = require "cdn.redis"
                for i = 1, 2 do
                    local red = redis:new()
                    red:set_timeouts(1000, 1000, 1000)
                    local ok, err = red:connect_tls("127.0.0.1", ${port}, "${serverName}")
                    if not ok then
                        ngx.say("refused: ", err)
                        return
                    end
                    local res, cerr = red:hset("cdn:purge:applied", "edge-" .. i, "1-" .. i)
                    ngx.say(i, " ", tostring(res or cerr), " reused=", red:get_reused_times())
                    red:set_keepalive(60000, 1)
                end
            }
        }`,
    { http: `    lua_ssl_trusted_certificate ${path.join(caDir, SECRET_FILES.redisTlsCa)};\n    lua_ssl_verify_depth 2;` },
  );
  try {
    const res = await fetch(`${nginx.url}/run`);
    if (res.status !== 200) throw new Error(`lua failed (${res.status}):\n${nginx.errorLog()}`);
    return { out: await res.text(), log: nginx.errorLog() };
  } finally {
    await nginx.stop();
  }
}

test('an edge trusting the stack CA writes over TLS, and reuses the pooled connection without a second handshake', async () => {
  const { out, log } = await acknowledgeTwice(material, REDIS_TLS_SERVER_NAME);
  expect(out).toMatch(/^1 [01] reused=0\n2 [01] reused=1\n$/);
  expect(log).not.toContain('[error]');
});

// (the error comes back as OpenSSL's, or, where the handshake had to wait, as connect_tls's own; nginx logs the reason)
const REFUSED = /^refused: TLS handshake failed: (19: self-signed certificate in certificate chain|certificate not accepted \(see the error log\))\n$/;

test('a certificate from another CA is refused', async () => {
  const { out, log } = await acknowledgeTwice(otherCa, REDIS_TLS_SERVER_NAME);
  expect(out).toMatch(REFUSED);
  expect(log).toContain('lua ssl certificate verify error: (19: self-signed certificate in certificate chain)');
});

test('a certificate that does not name the server is refused', async () => {
  const { out, log } = await acknowledgeTwice(material, 'redis.elsewhere.example');
  expect(out).toMatch(/^refused: TLS handshake failed: /);
  expect(log).toContain('certificate does not match host "redis.elsewhere.example"');
});

test('TLS and plain text never mix: connect_tls to the plain port fails, a plain PING to the TLS port gets no answer', async () => {
  // connect_tls never falls back to plain text
  expect((await acknowledgeTwice(material, REDIS_TLS_SERVER_NAME, redis.port)).out).toMatch(/^refused: TLS handshake failed/);
  const answer = await new Promise<string>((resolve) => {
    let got = '';
    const socket = net.connect(tlsPort, '127.0.0.1', () => socket.write('PING\r\n'));
    socket.on('data', (d) => (got += d.toString('latin1')));
    socket.on('error', () => resolve(got));
    socket.on('close', () => resolve(got));
    setTimeout(() => socket.destroy(), 500);
  });
  expect(answer).not.toContain('PONG');
  // while the plain port answers the same PING
  const plain = await new Promise<string>((resolve) => {
    const socket = net.connect(redis.port, '127.0.0.1', () => socket.write('PING\r\n'));
    socket.once('data', (d) => {
      resolve(d.toString('latin1'));
      socket.destroy();
    });
  });
  expect(plain).toBe('+PONG\r\n');
});
