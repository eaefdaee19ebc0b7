/**
 * The Pulumi program's handling of stack config: clear errors that name the key,
 * and secrets that must really be secrets.
 */
import { alloyPackageVersion, DEFAULT_IMAGES } from '../infra/targets/pulumi/images';
import { runProgram } from '../test/support/pulumi-mocks';
import { program } from './program';

const SPEC = { name: 'shop', regions: [{ name: 'eu', edges: 1 }] };
const docker = (extra: Record<string, unknown> = {}) => ({ 'cdn:target': 'docker', 'cdn:spec': SPEC, ...extra });

describe('stack program config', () => {
  test('an unknown target names the key and the choices', async () => {
    await expect(runProgram({ 'cdn:target': 'gcp' }, program)).rejects.toThrow(/cdn:target must be one of docker, aws, got "gcp"/);
  });

  test('a spec error names the field', async () => {
    await expect(runProgram(docker({ 'cdn:spec': { regions: [{ name: 'EU' }] } }), program)).rejects.toThrow(/regions\[0\]\.name: expected a lowercase name/);
  });

  test('filesystem storage is refused by the aws target, with the way out; docker takes it without a path', async () => {
    const aws = { 'cdn:target': 'aws', 'cdn:spec': { ...SPEC, storage: { kind: 'filesystem' } }, 'cdn:aws': { source: { repository: 'https://git.example/shop-cdn.git' } } };
    await expect(runProgram(aws, program)).rejects.toThrow(/cdn:spec.storage: the aws target keeps assets in S3-compatible storage; leave storage out/);
    await expect(runProgram(docker({ 'cdn:spec': { ...SPEC, storage: { kind: 'filesystem' } } }), program)).resolves.toBeDefined();
    await expect(runProgram(docker({ 'cdn:spec': { ...SPEC, storage: { kind: 'filesystem', path: '/srv/assets' } } }), program)).rejects.toThrow(
      /cdn:spec.storage.path: on the docker target the origin keeps assets in its own storage volume; leave path out/,
    );
  });

  test('a secret stored as plain text is refused; as a Pulumi secret it is used', async () => {
    await expect(runProgram(docker({ 'cdn:redisPassword': 'x'.repeat(32) }), program)).rejects.toThrow(
      /cdn:redisPassword is stored as plain text; set it with: pulumi config set --secret cdn:redisPassword/,
    );
    const run = await runProgram(docker({ 'cdn:redisPassword': 'S'.repeat(32) }), program, ['cdn:redisPassword']);
    // No password is generated for Redis when the stack sets one.
    expect(run.resources.filter((r) => r.name === 'secret-redis-password')).toEqual([]);
  });

  test('images: unknown names and unpinned third-party images are refused', async () => {
    await expect(runProgram(docker({ 'cdn:images': { varnish: 'varnish:7' } }), program)).rejects.toThrow(/cdn:images.varnish: unknown image/);
    await expect(runProgram(docker({ 'cdn:images': { minio: 'minio/minio:latest' } }), program)).rejects.toThrow(/cdn:images.minio: pin the image by digest/);
    await expect(runProgram(docker({ 'cdn:images': { alloy: 'grafana/alloy:v1.10.2' } }), program)).rejects.toThrow(/cdn:images.alloy: pin the image by digest/);
  });

  test('Alloy\'s Debian package version (aws) is the pinned image\'s tag', () => {
    expect(alloyPackageVersion({ ...DEFAULT_IMAGES })).toBe('1.10.2');
    expect(() => alloyPackageVersion({ ...DEFAULT_IMAGES, alloy: `mirror.example/alloy@sha256:${'0'.repeat(64)}` })).toThrow(/cdn:images.alloy: expected a version tag/);
  });

  test('docker settings are checked before anything is created', async () => {
    await expect(runProgram(docker({ 'cdn:docker': { subnet: '10.89.0.0/28' } }), program)).rejects.toThrow(/cdn:docker.subnet: expected an IPv4 network of \/24 or larger/);
    await expect(runProgram(docker({ 'cdn:docker': { bindAddress: 'everywhere' } }), program)).rejects.toThrow(/cdn:docker.bindAddress: expected an IPv4 address/);
  });
});
