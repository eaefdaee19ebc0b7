/**
 * `pulumi up` compiles the program with its own loader (ts-node, vendored 7.0.1 here,
 * on the project's TypeScript), not with ts-jest: load-as-pulumi.cjs takes that path
 * and runs both committed stacks under mocks. A program only ts-jest could compile
 * fails here.
 */
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';

test("Pulumi's TypeScript loader compiles the program, and both stacks run with all their outputs", () => {
  const out = execFileSync(process.execPath, [path.join(__dirname, 'load-as-pulumi.cjs')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 240_000 });
  const lines = out.trim().split('\n');
  expect(lines[0]).toMatch(/^typescript \d+\.\d+\.\d+, ts-node \d+\.\d+\.\d+$/);
  const outputs = 'adminToken,assetBaseUrl,balancerUrl,debugToken,edges,grafanaAdminPassword,grafanaUrl,originApiUrl,prometheusUrl,urlSigningKeys';
  expect(lines[1]).toMatch(new RegExp(`^local: [1-9]\\d* resources, outputs ${outputs}$`));
  expect(lines[2]).toMatch(new RegExp(`^dev: [1-9]\\d* resources, outputs ${outputs.replace('assetBaseUrl', 'artefactSha256,assetBaseUrl')}$`));
}, 300_000);
