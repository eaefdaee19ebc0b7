/**
 * One ComponentResource per service of the CDN, so `pulumi up` shows (and a stack's
 * graph holds) the object store, the invalidation bus, the origin, one edge fleet
 * per region, the balancer and monitoring as units, with their containers or
 * instances, volumes and rules beneath them. Targets create the children with
 * `parent: component`.
 */
import * as pulumi from '@pulumi/pulumi';

export type ServiceKind = 'Images' | 'Network' | 'ObjectStore' | 'InvalidationBus' | 'Origin' | 'EdgeFleet' | 'Balancer' | 'Monitoring';

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
