/**
 * Natively (`cdn local up --regional-replicas`), the Redis TLS material is made with
 * openssl, as the aws target makes it with @pulumi/tls: a CA, and a certificate for
 * REDIS_TLS_SERVER_NAME the primary and the replicas present. Made once per state
 * directory and kept (the CA's key beside it, mode 0600), like the debug token.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { cdnError } from '../../model/errors';
import { SECRET_FILES } from '../../model/layout';
import { REDIS_TLS_SERVER_NAME } from '../../model/topology';

const CA_KEY = 'redis-tls-ca.key';

function openssl(args: string[]): void {
  try {
    execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { stderr?: Buffer };
    if (err.code === 'ENOENT') throw cdnError('CDN_ERR_MISSING_PACKAGES', 'openssl not installed. Run ./scripts/setup.sh (it installs it with apt-get)');
    throw new Error(`openssl ${args[0]} failed: ${err.stderr?.toString().trim() ?? err.message}`);
  }
}

export function writeNativeRedisTls(secretsDir: string): void {
  const file = (name: string) => path.join(secretsDir, name);
  const made = [SECRET_FILES.redisTlsCa, SECRET_FILES.redisTlsCert, SECRET_FILES.redisTlsKey, CA_KEY].every((f) => fs.existsSync(file(f)));
  if (made) return;
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'cdn-redis-tls-'));
  try {
    const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
    openssl(['req', '-x509', ...ec, '-keyout', file(CA_KEY), '-out', file(SECRET_FILES.redisTlsCa), '-days', '3650', '-subj', '/CN=CDN Redis CA']);
    openssl(['req', '-new', ...ec, '-keyout', file(SECRET_FILES.redisTlsKey), '-out', path.join(work, 'request.csr'), '-subj', `/CN=${REDIS_TLS_SERVER_NAME}`]);
    // serverAuth for the primary's listener, clientAuth for a replica dialling it
    fs.writeFileSync(path.join(work, 'ext.cnf'), `subjectAltName=DNS:${REDIS_TLS_SERVER_NAME}\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n`);
    openssl(['x509', '-req', '-in', path.join(work, 'request.csr'), '-CA', file(SECRET_FILES.redisTlsCa), '-CAkey', file(CA_KEY), '-set_serial', `0x${Date.now().toString(16)}`, '-days', '1825', '-extfile', path.join(work, 'ext.cnf'), '-out', file(SECRET_FILES.redisTlsCert)]);
    for (const f of [CA_KEY, SECRET_FILES.redisTlsCa, SECRET_FILES.redisTlsKey, SECRET_FILES.redisTlsCert]) fs.chmodSync(file(f), 0o600);
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}
