/**
 * The certificate the Redis servers present on the links that cross regions
 * (replication, other regions' acknowledgements), and the CA the clients verify it
 * against: made by @pulumi/tls, kept in the stack's state as secrets, delivered as
 * secret files like the password. It names REDIS_TLS_SERVER_NAME, since clients
 * dial private addresses the certificate cannot know before the instances exist.
 *
 * Rotation: `pulumi up --replace` on the certificate (or the CA) issues a new one;
 * the instances read it at their next boot (see docs/deploying.md).
 */
import * as pulumi from '@pulumi/pulumi';
import * as tls from '@pulumi/tls';
import { REDIS_TLS_SERVER_NAME } from '../../model/topology';

export interface RedisTlsMaterial {
  /** PEM of the servers' certificate, their private key, and the CA's certificate. */
  cert: pulumi.Output<string>;
  key: pulumi.Output<string>;
  ca: pulumi.Output<string>;
}

const HOURS_PER_YEAR = 24 * 365;

export function createRedisTls(parent?: pulumi.Resource): RedisTlsMaterial {
  const opts = { parent };
  // P-256: what every TLS stack here speaks (Redis's OpenSSL, nginx's), and short PEMs.
  const caKey = new tls.PrivateKey('redis-tls-ca-key', { algorithm: 'ECDSA', ecdsaCurve: 'P256' }, opts);
  const ca = new tls.SelfSignedCert(
    'redis-tls-ca',
    {
      privateKeyPem: caKey.privateKeyPem,
      isCaCertificate: true,
      subject: { commonName: 'CDN Redis CA' },
      allowedUses: ['certSigning', 'crlSigning'],
      validityPeriodHours: 10 * HOURS_PER_YEAR,
    },
    opts,
  );
  const key = new tls.PrivateKey('redis-tls-key', { algorithm: 'ECDSA', ecdsaCurve: 'P256' }, opts);
  const request = new tls.CertRequest('redis-tls-request', { privateKeyPem: key.privateKeyPem, subject: { commonName: REDIS_TLS_SERVER_NAME }, dnsNames: [REDIS_TLS_SERVER_NAME] }, opts);
  const cert = new tls.LocallySignedCert(
    'redis-tls-cert',
    {
      certRequestPem: request.certRequestPem,
      caCertPem: ca.certPem,
      caPrivateKeyPem: caKey.privateKeyPem,
      // serverAuth for the primary's listener, clientAuth for a replica dialling it
      allowedUses: ['digitalSignature', 'keyEncipherment', 'serverAuth', 'clientAuth'],
      validityPeriodHours: 5 * HOURS_PER_YEAR,
    },
    opts,
  );
  return { cert: pulumi.secret(cert.certPem), key: pulumi.secret(key.privateKeyPem), ca: pulumi.secret(ca.certPem) };
}
