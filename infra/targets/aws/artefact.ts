/**
 * What the aws target's instances run, as one content-addressed artefact: a tar of
 * exactly the files they need, packed by the Pulumi program from this working tree
 * (after `npm run build`), uploaded to the stack's artefact bucket under its sha256,
 * downloaded and checked by every instance's bootstrap (cloud-init.ts). Instances
 * used to `git clone` a moving ref while their configuration came from the working
 * tree; now both come from the same `pulumi up`.
 *
 * Deterministic: entries sorted, fixed mtimes, owners and modes (0755 for
 * directories and executables, 0644 otherwise), plain ustar with no compression (a
 * gzip stream depends on the zlib that wrote it, and the artefact is a few MB), so
 * the same tree gives the same sha256 on any machine, and an unchanged tree replaces
 * no instance.
 *
 * The origin's npm dependencies are not packed: production node_modules holds the
 * Pulumi SDKs too (the same package.json serves the program), about 300 MB. The
 * artefact carries package.json and package-lock.json, and the origin instance runs
 * `npm ci --omit=dev --ignore-scripts`: npm checks every package against the
 * lockfile's sha512 integrity, and the lockfile is inside the artefact's hash.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { cdnError } from '../../model/errors';

/** Directories of the repository every role may read: Lua, the unit scripts, Grafana's dashboards. */
export const ARTEFACT_TREES = ['lua', 'edge/lua', 'balancer/lua', 'scripts', 'observability/dashboards'];
/** Files npm ci reads on the origin instance. */
export const ARTEFACT_FILES = ['package.json', 'package-lock.json', '.npmrc'];
/**
 * The built origin, and the sources it is built from: dist/origin/src/main.js and
 * what it requires. The layer rules (docs/layout.md, origin-imports-contract-and-errors)
 * keep the origin's imports to its contract and the error catalogue; artefact.test.ts
 * checks that every relative require of the packed files is packed too.
 */
export const ARTEFACT_BUILT: Record<string, string> = {
  'origin/src': 'dist/origin/src',
  'origin/contract': 'dist/origin/contract',
  'infra/model/errors.ts': 'dist/infra/model/errors.js',
};

/** 2000-01-01T00:00:00Z: every entry's mtime (GNU tar warns about 1970 ones). */
export const ARTEFACT_MTIME = 946684800;

export interface Artefact {
  /** The tar's sha256, hex: its name in the bucket, and what the bootstrap checks. */
  sha256: string;
  /** Where the program wrote it (Pulumi uploads it from here). */
  file: string;
  bytes: number;
  /** The packed paths, in order (directories end in /). */
  entries: string[];
}

/** The object key of an artefact in the stack's bucket. */
export function artefactKey(sha256: string): string {
  return `artefacts/${sha256}.tar`;
}

function walk(root: string, rel: string, keep: (rel: string) => boolean, out: Map<string, string>): void {
  const abs = path.join(root, rel);
  const stat = fs.lstatSync(abs);
  if (stat.isDirectory()) {
    out.set(`${rel}/`, abs);
    for (const name of fs.readdirSync(abs)) walk(root, `${rel}/${name}`, keep, out);
  } else if (stat.isFile()) {
    if (keep(rel)) out.set(rel, abs);
  } else {
    throw cdnError('CDN_ERR_CONFIG_INVALID', `${rel}: the artefact holds files and directories only`);
  }
}

/** Compiled JavaScript only: no source maps, no tests. */
const isBuiltJs = (rel: string) => rel.endsWith('.js') && !rel.endsWith('.test.js');

/** The sources of the built origin (no tests, no declarations). */
function sourcesOf(root: string, source: string): string[] {
  const abs = path.join(root, source);
  if (fs.statSync(abs).isFile()) return [source];
  const out: string[] = [];
  for (const name of fs.readdirSync(abs).sort()) {
    const rel = `${source}/${name}`;
    if (fs.statSync(path.join(root, rel)).isDirectory()) out.push(...sourcesOf(root, rel));
    else if (rel.endsWith('.ts') && !rel.endsWith('.test.ts') && !rel.endsWith('.d.ts')) out.push(rel);
  }
  return out;
}

/**
 * Refuses a dist/ older than the origin's sources: Pulumi runs the program from the
 * TypeScript sources, so nothing else would notice that the origin about to ship was
 * built from other code.
 */
export function checkBuilt(root: string): void {
  const stale: string[] = [];
  for (const source of Object.keys(ARTEFACT_BUILT)) {
    for (const ts of sourcesOf(root, source)) {
      const js = path.join(root, 'dist', ts.replace(/\.ts$/, '.js'));
      if (!fs.existsSync(js) || fs.statSync(js).mtimeMs < fs.statSync(path.join(root, ts)).mtimeMs) stale.push(ts);
    }
  }
  if (stale.length > 0) {
    throw cdnError(
      'CDN_ERR_CONFIG_INVALID',
      `dist/ is missing or older than ${stale.slice(0, 3).join(', ')}${stale.length > 3 ? ` and ${stale.length - 3} more` : ''}: run npm run build before pulumi up (the instances run the built origin this program packs)`,
    );
  }
}

/** Every path the artefact holds, sorted, mapped to its file on disk. */
export function artefactEntries(root: string): Map<string, string> {
  const found = new Map<string, string>();
  for (const tree of ARTEFACT_TREES) walk(root, tree, () => true, found);
  for (const file of ARTEFACT_FILES) walk(root, file, () => true, found);
  for (const built of Object.values(ARTEFACT_BUILT)) walk(root, built, isBuiltJs, found);
  // the parents of everything, so tar creates them with the modes above
  for (const rel of [...found.keys()]) {
    const parts = rel.replace(/\/$/, '').split('/');
    for (let i = 1; i < parts.length; i++) found.set(`${parts.slice(0, i).join('/')}/`, path.join(root, ...parts.slice(0, i)));
  }
  return new Map([...found.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

function octal(value: number, width: number): string {
  return value.toString(8).padStart(width - 1, '0') + '\0';
}

/** A ustar header; long names are split into prefix and name at a slash. */
function header(name: string, size: number, mode: number, type: '0' | '5'): Buffer {
  let prefix = '';
  let base = name;
  if (Buffer.byteLength(name) > 100) {
    const cut = name.lastIndexOf('/', name.length - 2);
    prefix = name.slice(0, cut);
    base = name.slice(cut + 1);
    if (cut < 0 || Buffer.byteLength(prefix) > 155 || Buffer.byteLength(base) > 100) throw new Error(`${name}: too long for a ustar header`);
  }
  const h = Buffer.alloc(512);
  h.write(base, 0, 100, 'utf8');
  h.write(octal(mode, 8), 100, 8, 'ascii');
  h.write(octal(0, 8), 108, 8, 'ascii');
  h.write(octal(0, 8), 116, 8, 'ascii');
  h.write(octal(size, 12), 124, 12, 'ascii');
  h.write(octal(ARTEFACT_MTIME, 12), 136, 12, 'ascii');
  h.write('        ', 148, 8, 'ascii');
  h.write(type, 156, 1, 'ascii');
  h.write('ustar\0', 257, 6, 'ascii');
  h.write('00', 263, 2, 'ascii');
  h.write('root', 265, 32, 'ascii');
  h.write('root', 297, 32, 'ascii');
  h.write(prefix, 345, 155, 'utf8');
  let sum = 0;
  for (const byte of h) sum += byte;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'ascii');
  return h;
}

/** The tar of `entries` (path -> file on disk), as bytes. */
export function tarOf(entries: Map<string, string>): Buffer {
  const blocks: Buffer[] = [];
  for (const [rel, abs] of entries) {
    if (rel.endsWith('/')) {
      blocks.push(header(rel, 0, 0o755, '5'));
      continue;
    }
    const content = fs.readFileSync(abs);
    const executable = (fs.statSync(abs).mode & 0o111) !== 0;
    blocks.push(header(rel, content.length, executable ? 0o755 : 0o644, '0'), content);
    const pad = (512 - (content.length % 512)) % 512;
    if (pad) blocks.push(Buffer.alloc(pad));
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

/**
 * Packs the artefact of the working tree at `root` into `outDir` (named by its
 * sha256; an existing file of that name is the same bytes and is kept).
 */
export function packArtefact(root: string, outDir = path.join(os.tmpdir(), 'cdn-artefacts')): Artefact {
  checkBuilt(root);
  const entries = artefactEntries(root);
  const tar = tarOf(entries);
  const sha256 = createHash('sha256').update(tar).digest('hex');
  fs.mkdirSync(outDir, { recursive: true });
  const file = path.join(outDir, `${sha256}.tar`);
  if (!fs.existsSync(file)) {
    const partial = `${file}.${process.pid}.part`;
    fs.writeFileSync(partial, tar);
    fs.renameSync(partial, file);
  }
  return { sha256, file, bytes: tar.length, entries: [...entries.keys()] };
}
