/**
 * Pulumi entry point (`main: stacks/` in Pulumi.yaml). `pulumi up -s local` deploys
 * the docker target, `pulumi up -s dev` the aws target; see stacks/program.ts.
 */
import { program } from './program';

const outputs = program();

export const balancerUrl = outputs.balancerUrl;
export const assetBaseUrl = outputs.assetBaseUrl;
export const grafanaUrl = outputs.grafanaUrl;
export const originApiUrl = outputs.originApiUrl;
export const edges = outputs.edges;
export const prometheusUrl = outputs.prometheusUrl;
export const adminToken = outputs.adminToken;
export const debugToken = outputs.debugToken;
export const urlSigningKeys = outputs.urlSigningKeys;
export const grafanaAdminPassword = outputs.grafanaAdminPassword;
// aws only (undefined, so not exported, on docker)
export const artefactSha256 = outputs.artefactSha256;
