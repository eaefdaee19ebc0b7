// The pre-flight rules as a CrossGuard policy pack (`pulumi preview --policy-pack policy`).
// The policies live in infra/targets/pulumi/preflight-policy.ts, tested by `npm test`;
// this file only serves them, from the build `npm ci` makes at the repository root.
const path = require('node:path');
const { PolicyPack } = require('@pulumi/policy');

const built = path.join(__dirname, '..', 'dist', 'infra', 'targets', 'pulumi', 'preflight-policy.js');
let policies;
let name;
try {
  ({ preflightPolicies: policies, POLICY_PACK_NAME: name } = require(built));
} catch (err) {
  console.error(`${built} is missing or broken (${err.message}): run \`npm ci\` (or \`npm run build\`) at the repository root first.`);
  process.exit(1);
}

new PolicyPack(name, { policies });
