/**
 * The artefact (artefact.ts): deterministic packing (the same tree, packed twice or
 * with other mtimes, gives the same sha256), a tar GNU tar reads with the modes it
 * should have, exactly the files the instances need, and a stale build refused. The
 * bootstrap's check of the sha256 runs in cloud-init.test.ts.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ARTEFACT_BUILT, ARTEFACT_FILES, ARTEFACT_TREES, artefactEntries, artefactKey, packArtefact } from './artefact';

const REPO = path.resolve(__dirname, '../../..');

describe('artefact', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cdn-artefact-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  /** A small working tree with everything the packer reads, built (dist/ newer than the sources). */
  function tree(root: string): void {
    const write = (rel: string, content: string, mode = 0o644) => {
      fs.mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
      fs.writeFileSync(path.join(root, rel), content, { mode });
    };
    for (const t of ARTEFACT_TREES) write(`${t}/a.txt`, t);
    write('scripts/run-unit.sh', '#!/bin/sh\n', 0o755);
    for (const f of ARTEFACT_FILES) write(f, `{"file":"${f}"}`);
    write('origin/src/main.ts', 'import "./app";');
    write('origin/src/main.test.ts', 'test');
    write('origin/contract/keys.ts', 'export {}');
    write('infra/model/errors.ts', 'export {}');
    write('infra/targets/aws/stack.ts', 'not packed');
    const past = new Date('2020-01-01T00:00:00Z');
    for (const ts of ['origin/src/main.ts', 'origin/src/main.test.ts', 'origin/contract/keys.ts', 'infra/model/errors.ts']) fs.utimesSync(path.join(root, ts), past, past);
    write('dist/origin/src/main.js', 'require("./app")');
    write('dist/origin/src/main.js.map', '{}');
    write('dist/origin/contract/keys.js', '');
    write('dist/infra/model/errors.js', '');
    write('dist/infra/targets/aws/stack.js', 'not packed');
    write('dist/test/x.js', 'not packed');
  }

  test('packing twice gives the same bytes and sha256; mtimes and the output place do not matter', () => {
    const root = path.join(dir, 'tree');
    tree(root);
    const a = packArtefact(root, path.join(dir, 'out-a'));
    const later = new Date('2030-01-01T00:00:00Z');
    for (const rel of ['lua/a.txt', 'package.json', 'dist/origin/src/main.js']) fs.utimesSync(path.join(root, rel), later, later);
    const b = packArtefact(root, path.join(dir, 'out-b'));
    expect(b.sha256).toBe(a.sha256);
    expect(fs.readFileSync(b.file).equals(fs.readFileSync(a.file))).toBe(true);
    expect(path.basename(a.file)).toBe(`${a.sha256}.tar`);
    expect(artefactKey(a.sha256)).toBe(`artefacts/${a.sha256}.tar`);
    // a change to a packed file is a new artefact; to anything else, not
    fs.writeFileSync(path.join(root, 'infra/targets/aws/stack.ts'), 'changed');
    expect(packArtefact(root, path.join(dir, 'out-c')).sha256).toBe(a.sha256);
    fs.writeFileSync(path.join(root, 'lua/a.txt'), 'changed');
    expect(packArtefact(root, path.join(dir, 'out-c')).sha256).not.toBe(a.sha256);
  });

  test('exactly what the instances need, sorted, with fixed owners, mtimes and modes GNU tar reads', () => {
    const root = path.join(dir, 'tree');
    tree(root);
    const a = packArtefact(root, path.join(dir, 'out'));
    const files = a.entries.filter((e) => !e.endsWith('/'));
    expect(files).toEqual(
      [
        '.npmrc',
        'balancer/lua/a.txt',
        'dist/infra/model/errors.js',
        'dist/origin/contract/keys.js',
        'dist/origin/src/main.js',
        'edge/lua/a.txt',
        'lua/a.txt',
        'observability/dashboards/a.txt',
        'package-lock.json',
        'package.json',
        'scripts/a.txt',
        'scripts/run-unit.sh',
      ].sort(),
    );
    expect(a.entries).toEqual([...a.entries].sort());
    const listing = execFileSync('tar', ['--numeric-owner', '-tvf', a.file], { encoding: 'utf8' }).trim().split('\n');
    expect(listing.find((l) => l.endsWith(' scripts/run-unit.sh'))).toMatch(/^-rwxr-xr-x 0\/0 +\d+ 2000-01-01 00:00 scripts\/run-unit\.sh$/);
    expect(listing.find((l) => l.endsWith(' package.json'))).toMatch(/^-rw-r--r-- 0\/0 /);
    expect(listing.find((l) => l.endsWith(' dist/origin/'))).toMatch(/^drwxr-xr-x 0\/0 /);
    const out = path.join(dir, 'x');
    fs.mkdirSync(out);
    execFileSync('tar', ['-xf', a.file, '-C', out]);
    expect(fs.readFileSync(path.join(out, 'dist/origin/src/main.js'), 'utf8')).toBe('require("./app")');
  });

  test('a dist/ older than the origin\'s sources (or missing) is refused, saying to build first', () => {
    const root = path.join(dir, 'tree');
    tree(root);
    const now = new Date();
    fs.utimesSync(path.join(root, 'origin/contract/keys.ts'), now, now);
    fs.utimesSync(path.join(root, 'dist/origin/contract/keys.js'), new Date('2021-01-01T00:00:00Z'), new Date('2021-01-01T00:00:00Z'));
    expect(() => packArtefact(root, path.join(dir, 'out'))).toThrow(/dist\/ is missing or older than origin\/contract\/keys\.ts: run npm run build before pulumi up/);
    fs.rmSync(path.join(root, 'dist/infra/model/errors.js'));
    expect(() => packArtefact(root, path.join(dir, 'out'))).toThrow(/older than origin\/contract\/keys\.ts, infra\/model\/errors\.ts:/);
  });

  test('the repository\'s artefact holds everything the built origin requires, and every file the units read', () => {
    const entries = new Set(artefactEntries(REPO).keys());
    const packed = [...entries].filter((e) => e.endsWith('.js'));
    expect(packed).toContain('dist/origin/src/main.js');
    for (const js of packed) {
      const text = fs.readFileSync(path.join(REPO, js), 'utf8');
      for (const m of text.matchAll(/require\("(\.{1,2}\/[^"]+)"\)/g)) {
        const target = path.posix.normalize(path.posix.join(path.posix.dirname(js), m[1]));
        expect([`${target}.js`, `${target}/index.js`].some((t) => entries.has(t)) || `${js} requires ${m[1]}`).toBe(true);
      }
    }
    for (const rel of ['scripts/run-unit.sh', 'scripts/setup.sh', 'lua/cdn/settings.lua', 'edge/lua/cdn/edge.lua', 'balancer/lua/cdn/balancer.lua', 'observability/dashboards/cdn-overview.json', 'package-lock.json']) {
      expect(entries.has(rel)).toBe(true);
    }
    // nothing of the program, the tests or source maps
    expect([...entries].filter((e) => /^dist\/(test|infra\/targets|stacks)\/|\.map$|\.test\.js$/.test(e))).toEqual([]);
    expect(Object.keys(ARTEFACT_BUILT)).toEqual(['origin/src', 'origin/contract', 'infra/model/errors.ts']);
  });
});
