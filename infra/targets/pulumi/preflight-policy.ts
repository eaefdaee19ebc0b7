/**
 * The pre-flight rules (preflight.ts) as a CrossGuard policy pack, so an operator
 * runs them against what the engine is about to create:
 *
 *   pulumi preview -s dev --policy-pack policy
 *
 * policy/index.js serves these policies (built into dist/ by `npm run build`, which
 * `npm ci` runs). Only the rules over resources travel: a Pulumi.yaml Pulumi cannot
 * load never reaches a policy, and whether a resource was registered inside an apply
 * or an output resolves is known only to the mocked run in `npm test`.
 *
 * Only types come from @pulumi/policy, so nothing here loads it at run time.
 */
import type { Policies, PolicyResource, ReportViolation, ResourceValidationArgs, StackValidationArgs } from '@pulumi/policy';
import { checkResources, checkUniqueSecurityGroupRules, checkUniqueUrns, type Finding, type GraphResource } from './preflight';

export const POLICY_PACK_NAME = 'cdn-preflight';

/**
 * A resource as the engine hands it to a policy. `props` are the inputs after the
 * provider's check (an autonamed `name` is there; when it is not, the rules derive it
 * from the logical name as the provider would). An unknown value (preview, before
 * its resource exists) throws when read, and the policy SDK reports that resource as
 * not checkable instead of passing or failing it.
 */
export function graphResource(r: Pick<ResourceValidationArgs, 'type' | 'name' | 'urn' | 'props'> & { parent?: string }): GraphResource {
  return { type: r.type, name: r.name, urn: r.urn, inputs: r.props, ...(r.parent ? { parent: r.parent } : {}) };
}

function report(findings: Finding[], reportViolation: ReportViolation, urnOf: (f: Finding) => string | undefined): void {
  for (const f of findings) reportViolation(`[${f.rule}] ${f.message}`, urnOf(f));
}

export const preflightPolicies: Policies = [
  {
    name: 'preflight-names-and-limits',
    description:
      'Names as the provider makes them (security groups, Docker containers, volumes, networks, image references), EC2 tags, user data at most 16 KiB raw, VPC and subnet sizes, EBS sizes, security-group rule ports and descriptions; a resource type no rule knows is a violation. See docs/preflight.md.',
    enforcementLevel: 'mandatory',
    validateResource: (args: ResourceValidationArgs, reportViolation: ReportViolation) => {
      report(checkResources([graphResource({ ...args, parent: args.opts.parent })]), reportViolation, () => undefined);
    },
  },
  {
    name: 'preflight-unique',
    description: 'No two resources share a URN, and no security-group rule (group, direction, protocol, ports, source) is made twice. See docs/preflight.md.',
    enforcementLevel: 'mandatory',
    validateStack: (args: StackValidationArgs, reportViolation: ReportViolation) => {
      const resources = args.resources.map((r: PolicyResource) => graphResource({ ...r, parent: r.parent?.urn }));
      const byName = new Map(resources.map((r) => [`${r.type}::${r.name}`, r.urn]));
      report([...checkUniqueUrns(resources), ...checkUniqueSecurityGroupRules(resources)], reportViolation, (f) => byName.get(f.subject));
    },
  },
];
