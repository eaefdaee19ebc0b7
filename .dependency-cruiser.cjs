/**
 * The layer rules of docs/layout.md, checked on every `npm run lint` (so on every
 * `npm test`). Each layer imports only the layers below it:
 *
 *   stacks/  cli/  examples/          top: the Pulumi entry, the `cdn` command
 *   infra/targets/{native,docker,aws} thin mappings of units (docker and aws share infra/targets/pulumi)
 *   infra/units/                      spec + topology -> service units
 *   renderers                         edge/, balancer/, observability/, origin/render.ts, infra/render/
 *   infra/model/   origin/contract/   the model; what origin and edge agree on
 *
 * origin/src/ (the NestJS service) stands apart: it imports the contract and the
 * error catalogue, never deployment code. Tests, benchmarks and load scripts may
 * reach any layer; nothing of the product imports them.
 */
const TOOLING = '(\\.test\\.ts$|^test/|^bench/|^load/|^origin/test/)';
const PROJECT = '^(infra|origin|edge|balancer|observability|stacks|cli|examples|test|bench|load)/';
const RENDERERS = '^((edge|balancer|observability)/[^/]+\\.ts$|origin/render\\.ts$|infra/render/)';
const PULUMI = '(^|/)node_modules/@pulumi/';

const layer = (name, comment, from, to) => ({ name, comment, severity: 'error', from: { path: from, pathNot: TOOLING }, to });

module.exports = {
  forbidden: [
    { name: 'no-circular', comment: 'An import cycle ties layers together: move the shared piece down.', severity: 'error', from: {}, to: { circular: true } },
    layer('nothing-imports-the-top', 'stacks/, cli/ and examples/ are entry points; nothing builds on them.', '^', { path: '^(stacks|cli|examples)/', pathNot: '^(stacks|cli|examples)/' }),
    { ...layer('model-stands-alone', 'The model (spec, topology, layout, rendered files, errors) imports nothing else of the project.', '^infra/model/', { path: PROJECT, pathNot: '^infra/model/' }) },
    layer('contract-has-no-dependencies', 'What origin and edge agree on is plain data: no project code, no packages, no Node built-ins.', '^origin/contract/', { pathNot: '^origin/contract/' }),
    layer('origin-imports-contract-and-errors', 'The origin service imports the contract and the error catalogue, never deployment code.', '^origin/src/', { path: PROJECT, pathNot: '^(origin/src/|origin/contract/|infra/model/errors\\.ts$)' }),
    layer('renderers-import-model-and-contract', 'Renderers are pure: model + contract -> files. Never units, targets, Pulumi or the origin\'s runtime code.', RENDERERS, { path: `^(infra/units/|infra/targets/|stacks/|cli/|origin/src/)|${PULUMI}` }),
    layer('units-below-targets', 'Units describe services; targets map them. Units know no target and no Pulumi.', '^infra/units/', { path: `^(infra/targets/|stacks/|cli/)|${PULUMI}` }),
    layer('native-without-pulumi', 'The native target (npm start, tests, benchmarks) runs without Pulumi.', '^infra/targets/native/', { path: `^infra/targets/(docker|aws|pulumi)/|${PULUMI}` }),
    layer('docker-and-aws-apart', 'What docker and aws share lives in infra/targets/pulumi/.', '^infra/targets/docker/', { path: '^infra/targets/aws/' }),
    layer('aws-and-docker-apart', 'What docker and aws share lives in infra/targets/pulumi/.', '^infra/targets/aws/', { path: '^infra/targets/docker/' }),
    layer('pulumi-shared-below-targets', 'The shared Pulumi module serves docker and aws; it imports neither.', '^infra/targets/pulumi/', { path: '^infra/targets/(docker|aws|native)/' }),
    layer('product-not-on-tooling', 'Tests, benchmarks and load scripts build on the product, never the other way round.', PROJECT, { path: TOOLING }),
  ],
  options: {
    tsConfig: { fileName: 'tsconfig.json' },
    tsPreCompilationDeps: true,
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '(^|/)dist/' },
  },
};
