/**
 * A minimal ustar writer: what the Engine API's archive upload (PUT
 * /containers/{id}/archive, dockerode's putArchive) takes. The engine creates missing
 * parent directories (0755, root) the way the Pulumi provider's uploads rely on.
 */

export interface TarEntry {
  /** Absolute or relative path; stored relative to the root the archive is put at. */
  path: string;
  content: Buffer;
  mode: number;
  uid?: number;
  gid?: number;
}

const BLOCK = 512;

function octal(n: number, width: number): string {
  // width - 1 digits and a NUL, as ustar readers expect
  return n.toString(8).padStart(width - 1, '0') + '\0';
}

/** ustar keeps names in two fields: prefix (155) / name (100). */
function splitName(name: string): { prefix: string; name: string } {
  if (Buffer.byteLength(name) <= 100) return { prefix: '', name };
  for (let i = name.indexOf('/'); i !== -1; i = name.indexOf('/', i + 1)) {
    const prefix = name.slice(0, i);
    const rest = name.slice(i + 1);
    if (Buffer.byteLength(prefix) <= 155 && Buffer.byteLength(rest) <= 100) return { prefix, name: rest };
  }
  throw new Error(`tar: path too long for ustar: ${name}`);
}

function header(entry: TarEntry, name: string): Buffer {
  const h = Buffer.alloc(BLOCK, 0);
  const parts = splitName(name);
  h.write(parts.name, 0, 100, 'utf8');
  h.write(octal(entry.mode & 0o7777, 8), 100, 8, 'ascii');
  h.write(octal(entry.uid ?? 0, 8), 108, 8, 'ascii');
  h.write(octal(entry.gid ?? 0, 8), 116, 8, 'ascii');
  h.write(octal(entry.content.length, 12), 124, 12, 'ascii');
  h.write(octal(Math.floor(Date.now() / 1000), 12), 136, 12, 'ascii');
  h.write('        ', 148, 8, 'ascii'); // checksum is computed with spaces here
  h.write('0', 156, 1, 'ascii'); // a regular file
  h.write('ustar\0', 257, 6, 'ascii');
  h.write('00', 263, 2, 'ascii');
  h.write(parts.prefix, 345, 155, 'utf8');
  let sum = 0;
  for (const b of h) sum += b;
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'ascii');
  return h;
}

/** The archive of `entries`, each a regular file. */
export function tarOf(entries: TarEntry[]): Buffer {
  const blocks: Buffer[] = [];
  for (const e of entries) {
    const name = e.path.replace(/^\/+/, '');
    if (name === '' || name.split('/').includes('..')) throw new Error(`tar: refusing path ${e.path}`);
    blocks.push(header(e, name), e.content);
    const pad = (BLOCK - (e.content.length % BLOCK)) % BLOCK;
    if (pad) blocks.push(Buffer.alloc(pad, 0));
  }
  blocks.push(Buffer.alloc(BLOCK * 2, 0));
  return Buffer.concat(blocks);
}

/** The content of the first regular file in an archive (what the Engine API's archive GET returns for one file). */
export function firstFile(archive: Buffer): Buffer {
  for (let at = 0; at + BLOCK <= archive.length; ) {
    const h = archive.subarray(at, at + BLOCK);
    if (h.every((b) => b === 0)) break;
    const size = parseInt(h.subarray(124, 136).toString('ascii').replace(/\0.*$/s, '').trim() || '0', 8);
    const type = String.fromCharCode(h[156]);
    if (type === '0' || type === '\0') return archive.subarray(at + BLOCK, at + BLOCK + size);
    // PAX or GNU headers, directories: skip the entry and its data
    at += BLOCK + Math.ceil(size / BLOCK) * BLOCK;
  }
  throw new Error('tar: no regular file in the archive');
}
