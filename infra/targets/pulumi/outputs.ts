/** What `pulumi stack output` shows for either target. */
import type * as pulumi from '@pulumi/pulumi';

export interface StackOutputs {
  /** Where shoppers (and k6 runs) send requests. */
  balancerUrl: pulumi.Output<string>;
  /** The base URL storefronts put in front of asset keys. */
  assetBaseUrl: pulumi.Output<string>;
  grafanaUrl: pulumi.Output<string>;
  /** The asset and purge API (reachable from inside the stack's network only). */
  originApiUrl: pulumi.Output<string>;
  /** Edge URLs per region. */
  edges: pulumi.Output<Record<string, string[]>>;
  prometheusUrl: pulumi.Output<string>;
  /** Secrets: `pulumi stack output --show-secrets adminToken`. */
  adminToken: pulumi.Output<string>;
  /** The token for the edges' X-Cdn-Debug headers: `pulumi stack output --show-secrets debugToken`. */
  debugToken: pulumi.Output<string>;
  /** The URL signing keys (`<id>:<secret>,...`, docs/images.md): `pulumi stack output --show-secrets urlSigningKeys`. */
  urlSigningKeys: pulumi.Output<string>;
  grafanaAdminPassword: pulumi.Output<string>;
  /**
   * aws only: the sha256 of the artefact the instances run (infra/targets/aws/artefact.ts),
   * the name of its object in the stack's bucket.
   */
  artefactSha256?: pulumi.Output<string>;
}

/** Outputs only some targets have. */
export const AWS_ONLY_OUTPUTS = ['artefactSha256'];
