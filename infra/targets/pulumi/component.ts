/**
 * One ComponentResource per service of the CDN, so `pulumi up` shows (and a stack's
 * graph holds) the object store, the invalidation bus, the origin, one edge fleet
 * per region, the balancer and monitoring as units, with their containers or
 * instances, volumes and rules beneath them. Targets create the children with
 * `parent: component`.
 */
import * as pulumi from '@pulumi/pulumi';
import type { ServiceUnit } from '../../units/units';

export type ServiceKind = 'Images' | 'Network' | 'Secrets' | 'Artefact' | 'ObjectStore' | 'InvalidationBus' | 'Origin' | 'EdgeFleet' | 'Balancer' | 'Monitoring';

export class CdnService extends pulumi.ComponentResource {
  readonly kind: ServiceKind;

  constructor(kind: ServiceKind, name: string, opts?: pulumi.ComponentResourceOptions) {
    super(`cdn:service:${kind}`, name, {}, opts);
    this.kind = kind;
  }

  /** Marks the component complete, with the outputs `pulumi stack` shows for it. */
  done(outputs: pulumi.Inputs = {}): this {
    this.registerOutputs(outputs);
    return this;
  }
}

/** The service component a unit belongs to: one per service, one edge fleet per region. */
export function componentOf(unit: ServiceUnit): { kind: ServiceKind; name: string } {
  switch (unit.role) {
    case 'redis':
      return { kind: 'InvalidationBus', name: 'bus' };
    case 'origin':
      return { kind: 'Origin', name: 'origin' };
    case 'edge':
      return { kind: 'EdgeFleet', name: `edges-${unit.region}` };
    case 'balancer':
      return { kind: 'Balancer', name: 'balancer' };
    case 'object-store':
      return { kind: 'ObjectStore', name: 'object-store' };
    case 'prometheus':
    case 'grafana':
    case 'loki':
    case 'log-shipper':
      return { kind: 'Monitoring', name: 'monitoring' };
  }
}

/** One component per name, created on first use; `doneAll` completes them. */
export class Components {
  private readonly byName = new Map<string, CdnService>();

  get(kind: ServiceKind, name: string): CdnService {
    if (!this.byName.has(name)) this.byName.set(name, new CdnService(kind, name));
    return this.byName.get(name)!;
  }

  of(unit: ServiceUnit): CdnService {
    const { kind, name } = componentOf(unit);
    return this.get(kind, name);
  }

  doneAll(): void {
    for (const c of this.byName.values()) c.done();
  }
}
