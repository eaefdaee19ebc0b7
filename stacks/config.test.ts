import * as fs from 'node:fs';
import * as path from 'node:path';
import { parse } from 'yaml';
import { stackConfig } from './config';

const ROOT = path.resolve(__dirname, '..');

function stackFile(name: string): Record<string, unknown> {
  return parse(fs.readFileSync(path.join(ROOT, `Pulumi.${name}.yaml`), 'utf8')).config;
}

describe('stack config', () => {
  test('Pulumi.local.yaml is a docker stack with two regions', () => {
    const c = stackConfig(stackFile('local'));
    expect(c.target).toBe('docker');
    expect(c.spec.regions.map((r) => r.name)).toEqual(['eu', 'us']);
  });

  test('Pulumi.dev.yaml is an aws stack across two regions', () => {
    const c = stackConfig(stackFile('dev'));
    expect(c.target).toBe('aws');
    expect(c.spec.regions.length).toBeGreaterThanOrEqual(2);
    expect(c.spec.defaultRegion).toBe('eu-west-1');
  });

  test('config errors name the key', () => {
    expect(() => stackConfig({ 'cdn:target': 'gcp' })).toThrow(/cdn:target must be one of docker, aws/);
    expect(() => stackConfig({ 'cdn:target': 'aws', 'cdn:spec': { regions: [{ name: 'eu', edges: -1 }] } })).toThrow(/regions\[0\]\.edges/);
  });
});
