/**
 * The units of a whole stack: the CDN's own services and, where the topology places
 * them, the ones run from images; what targets map without knowing any service.
 */
import { containerLayout, secretFile } from '../model/layout';
import { parseSpec } from '../model/spec';
import type { Placement, Topology } from '../model/topology';
import { IMAGE_PORTS, type LogShipping } from './deployed';
import { buildUnits, inDependencyOrder } from './stack';
import type { ServiceUnit } from './units';

const at = (host: string, port: number): Placement => ({ listen: { host: '0.0.0.0', port }, reach: { host, port } });

function deployedTopology(): Topology {
  return {
    redis: at('10.0.0.1', 6379),
    origin: at('10.0.0.2', 3000),
    originApi: at('10.0.0.2', 3001),
    balancer: { traffic: at('10.0.0.3', 8080), internal: at('10.0.0.3', 9145) },
    edges: [
      { id: 'eu-1', region: 'eu', index: 1, traffic: at('10.0.1.1', 8081), internal: at('10.0.1.1', 9145) },
      { id: 'us-1', region: 'us', index: 1, traffic: at('10.0.2.1', 8081), internal: at('10.0.2.1', 9145) },
    ],
    prometheus: at('10.0.0.4', 9090),
    objectStore: at('10.0.0.5', IMAGE_PORTS.objectStore),
    loki: at('10.0.0.4', IMAGE_PORTS.loki),
    grafana: at('10.0.0.4', IMAGE_PORTS.grafana),
    publicBaseUrl: 'https://cdn.shop.example',
  };
}

function units(logShipping: LogShipping): ServiceUnit[] {
  const storage = { kind: 's3', endpoint: 'http://10.0.0.5:9000', bucket: 'shop-assets', accessKeySecret: 'S3_KEY', secretKeySecret: 'S3_SECRET' };
  const spec = parseSpec({ regions: [{ name: 'eu', edges: 1 }, { name: 'us', edges: 1 }], storage, secrets: { redisPassword: 'REDIS_PASSWORD' } });
  const layout = containerLayout();
  return buildUnits({ spec, topology: deployedTopology(), layout, adminTokenFile: secretFile(layout, 'adminToken')!, debugTokenFile: secretFile(layout, 'debugToken')!, urlSigningKeysFile: secretFile(layout, 'urlSigningKeys')!, withPrometheus: true, logShipping });
}

describe('stack units', () => {
  test('every service is a unit, each after the units it depends on', () => {
    const all = units({ kind: 'docker', network: 'shop-net' });
    expect(all.map((u) => u.name)).toEqual(['redis', 'object-store', 'origin', 'edge-eu-1', 'edge-us-1', 'balancer', 'prometheus', 'loki', 'alloy', 'grafana']);
    const position = new Map(all.map((u, i) => [u.name, i]));
    for (const u of all) for (const d of u.dependsOn) expect(position.get(d)).toBeLessThan(position.get(u.name)!);
  });

  test('what the targets need of each unit is in the unit: image, group, volumes, secrets, connections', () => {
    const byName = new Map(units({ kind: 'docker', network: 'shop-net' }).map((u) => [u.name, u]));
    expect(byName.get('object-store')).toMatchObject({ image: 'minio', volumes: ['/data'], secrets: ['s3AccessKey', 's3SecretKey'] });
    expect(byName.get('grafana')).toMatchObject({ image: 'grafana', group: 'monitoring', user: '472', secrets: ['grafanaAdminPassword'], published: { port: 3000, audience: 'operators' } });
    expect(byName.get('prometheus')!.group).toBe('monitoring');
    expect(byName.get('balancer')!.published).toEqual({ port: 8080, audience: 'shoppers' });
    // the edges read the bucket with the origin's keys when the spec names none of their own
    expect(byName.get('edge-eu-1')!.secrets).toEqual(['debugToken', 'urlSigningKeys', 'redisPassword', 's3AccessKey', 's3SecretKey']);
    expect(byName.get('balancer')!.secrets).toEqual([]);
    // the one Alloy container reads each nginx unit's logs volume
    expect(byName.get('alloy')!.reads.map((r) => r.unit)).toEqual(['edge-eu-1', 'edge-us-1', 'balancer']);
    expect(byName.get('loki')!.accepts).toEqual([{ peer: 'alloy', port: 3100, purpose: 'logs from Alloy' }]);
  });

  test('every connection names a unit of the stack, and no unit is dialed on a port it does not listen on', () => {
    for (const shipping of [{ kind: 'docker', network: 'n' }, { kind: 'journal' }] as LogShipping[]) {
      const all = units(shipping);
      const names = new Set(all.map((u) => u.name));
      for (const u of all) for (const c of u.accepts) expect([u.name, names.has(c.peer)]).toEqual([u.name, true]);
      expect(all.find((u) => u.name === 'edge-us-1')!.accepts.map((c) => c.port).sort()).toEqual([8081, 9145, 9145]);
    }
  });

  test('with the journal, Alloy runs on every machine and Loki admits each machine once', () => {
    const all = units({ kind: 'journal' });
    const alloy = all.find((u) => u.role === 'log-shipper')!;
    expect(alloy).toMatchObject({ onEveryHost: true, env: { CDN_LOKI_PUSH_URL: 'http://10.0.0.4:3100/loki/api/v1/push' } });
    const groups = new Set(all.filter((u) => !u.onEveryHost && u.group !== 'monitoring').map((u) => u.group));
    expect(all.find((u) => u.name === 'loki')!.accepts.map((c) => c.peer).sort()).toEqual([...groups].sort());
  });

  test('a dependency on a unit the stack does not run, or a circle, is refused', () => {
    const base = units({ kind: 'journal' })[0];
    expect(() => inDependencyOrder([{ ...base, name: 'a', dependsOn: ['b'] }])).toThrow('a depends on b, which the stack does not run');
    expect(() => inDependencyOrder([{ ...base, name: 'a', dependsOn: ['b'] }, { ...base, name: 'b', dependsOn: ['a'] }])).toThrow('units depend on each other in a circle: a -> b -> a');
  });
});
