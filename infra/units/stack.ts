/**
 * All units of a stack: the CDN's own services (units.ts), then, where the
 * topology places them, the ones the deployed stacks run from images (deployed.ts).
 * What every target starts from.
 */
import { deployedServiceUnits, type LogShipping } from './deployed';
import { cdnUnits, type CdnUnitOptions, type ServiceUnit } from './units';

export interface UnitOptions extends CdnUnitOptions {
  /** How the deployed stacks ship logs to Loki (with topology.loki); natively nothing is shipped. */
  logShipping?: LogShipping;
}

/** Every unit of the stack, each after the units it depends on. */
export function buildUnits(o: UnitOptions): ServiceUnit[] {
  const units = cdnUnits(o);
  const storage = o.spec.storage;
  // With the stack's own object store and edge keys in the spec, the object store creates the edges' user.
  const edgeUser = storage.kind === 's3' && storage.edgeAccessKeySecret ? { bucket: storage.bucket } : undefined;
  return inDependencyOrder([...units, ...deployedServiceUnits({ topology: o.topology, layout: o.layout, units, logShipping: o.logShipping, objectStoreEdgeUser: edgeUser })]);
}

/** A stable topological order: units keep their order unless one must wait for a later one. */
export function inDependencyOrder(units: ServiceUnit[]): ServiceUnit[] {
  const byName = new Map(units.map((u) => [u.name, u]));
  const done = new Set<string>();
  const out: ServiceUnit[] = [];
  const visit = (u: ServiceUnit, path: string[]) => {
    if (done.has(u.name)) return;
    if (path.includes(u.name)) throw new Error(`units depend on each other in a circle: ${[...path, u.name].join(' -> ')}`);
    for (const d of u.dependsOn) {
      const dep = byName.get(d);
      if (!dep) throw new Error(`${u.name} depends on ${d}, which the stack does not run`);
      visit(dep, [...path, u.name]);
    }
    done.add(u.name);
    out.push(u);
  };
  for (const u of units) visit(u, []);
  return out;
}
