/**
 * Loads and runs the Pulumi program the way `pulumi up` does, minus the engine: the
 * nodejs language host's TypeScript path (@pulumi/pulumi cmd/run/run.js with
 * `typescript: true`): its choice of compiler and ts-node (the project's typescript,
 * Pulumi's vendored ts-node 7.0.1 when the project has none), the tsconfig it reads and
 * the compiler options it adds; then stacks/index.ts on each committed stack's config
 * (dev with AMIs pinned), under the tests' mocks. Jest compiles with ts-jest, so
 * only this catches a program that Pulumi's own loader cannot compile.
 * Run by load-as-pulumi.test.ts; prints one line per stack.
 */
'use strict';
const path = require('path');
const root = path.resolve(__dirname, '../..');
process.chdir(root);
const pulumiDir = path.join(root, 'node_modules/@pulumi/pulumi');
const tsutils = require(path.join(pulumiDir, 'tsutils'));
const semver = require(require.resolve('semver', { paths: [pulumiDir] }));
const { tsnodeRequire, typescriptRequire } = tsutils.typeScriptRequireStrings();
const compilerOptions = tsutils.loadTypeScriptCompilerOptions('tsconfig.json');
const ts = require(typescriptRequire);
const tsn = require(tsnodeRequire);
console.log(`typescript ${ts.version}, ts-node ${tsn.VERSION}`);
const useNodeNext = semver.parse(ts.version).compare(new semver.SemVer('4.7.0')) >= 0;
// the options run.js passes (package.json has no "type": "module", so not its ESM path)
tsn.register({
  compiler: typescriptRequire,
  transpileOnly: compilerOptions.noCheck,
  project: 'tsconfig.json',
  skipProject: false,
  compilerOptions: { target: 'ES2020', module: useNodeNext ? 'nodenext' : 'commonjs', moduleResolution: useNodeNext ? 'nodenext' : 'node', sourceMap: 'true', ...compilerOptions },
});
// Now run the program as the engine would (stacks/index.ts), on each committed stack's config (dev with pinned AMIs), under the tests' mocks.
const yaml = require('yaml');
const { runProgram, resolveOutputs } = require(path.join(root, 'test/support/pulumi-mocks.ts'));
(async () => {
  for (const stackName of ['local', 'dev']) {
    const conf = yaml.parse(require('fs').readFileSync(`Pulumi.${stackName}.yaml`, 'utf8')).config;
    if (stackName === 'dev') conf['cdn:aws'] = { ...(conf['cdn:aws'] || {}), amis: { 'eu-west-1': 'ami-0123456789abcdef0', 'us-east-1': 'ami-0fedcba9876543210' } };
    const run = await runProgram(conf, () => require(path.join(root, 'stacks/index.ts')));
    const outputs = await resolveOutputs(run.result);
    // (an export whose value is undefined is no stack output: the engine drops it)
    const exported = Object.keys(outputs).filter((k) => outputs[k].known && outputs[k].value !== undefined);
    console.log(`${stackName}: ${run.resources.length} resources, outputs ${exported.sort().join(',')}`);
    delete require.cache[path.join(root, 'stacks/index.ts')];
  }
})().catch((e) => { console.error(e); process.exit(1); });
