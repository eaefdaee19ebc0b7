/**
 * cdn.edge.images (the image query grammar the edge reduces to one canonical query)
 * and cdn.edge.signature, run inside real nginx; signed URLs made by the origin's
 * signer (origin/src/images/url-signing.ts), so the two sides are checked together.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { runLua } from '../test/support/nginx-lua';
import { signImageQuery } from '../origin/src/images/url-signing';
import { parseSpec } from '../infra/model/spec';

const KEYS = { current: { id: 'k2', secret: 'second-secret' }, previous: { id: 'k1', secret: 'first-secret' } };
let keysFile: string;

beforeAll(() => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cdn-images-'));
  keysFile = path.join(dir, 'url-signing-keys');
  fs.writeFileSync(keysFile, `${KEYS.current.id}:${KEYS.current.secret},${KEYS.previous.id}:${KEYS.previous.secret}\n`);
});

/** images.query(path, args) for each query: [canonical, auto, exp] or [null, status, reason]. */
async function canonical(queries: string[], path_ = '/p/shoe.jpg'): Promise<unknown[][]> {
  const images = parseSpec({}).images;
  const settings = { enabled: true, widths: images.widths, qualities: images.qualities, defaultQuality: images.defaultQuality };
  const out = await runLua(`local images = require "cdn.edge.images"
local cjson = require "cjson"
require("cdn.edge.signature").init(${JSON.stringify(keysFile)})
images.init(cjson.decode(${JSON.stringify(JSON.stringify(settings))}))
local out = {}
for i, q in ipairs(cjson.decode(${JSON.stringify(JSON.stringify(queries))})) do
  local a, b, c = images.query(${JSON.stringify(path_)}, q)
  out[i] = { a == nil and cjson.null or a, b == nil and cjson.null or b, c == nil and cjson.null or c }
end
ngx.print(cjson.encode(out))`);
  return JSON.parse(out) as unknown[][];
}

describe('image queries at the edge', () => {
  test('no image parameter: the original bytes; unknown parameters never reach the key', async () => {
    expect(await canonical(['', 'utm_source=x', 'v=3&ref=home', 'dpr=2', 'fit=cover'])).toEqual([[''], [''], [''], [''], ['']].map((r) => [r[0], null, null]));
  });

  test('widths snap up to the configured set, dpr multiplies first, q snaps to its steps', async () => {
    const rows = await canonical(['w=200', 'w=256', 'w=1', 'w=5000', 'w=300&dpr=2', 'w=200&q=60', 'w=200&q=95', 'w=640&fmt=webp&junk=1', 'q=50', 'fmt=png']);
    expect(rows.map((r) => r[0])).toEqual([
      'fmt=auto&q=75&w=256',
      'fmt=auto&q=75&w=256',
      'fmt=auto&q=75&w=16',
      'fmt=auto&q=75&w=3840',
      'fmt=auto&q=75&w=640',
      'fmt=auto&q=75&w=256',
      'fmt=auto&q=90&w=256',
      'fmt=webp&q=75&w=640',
      'fmt=auto&q=50',
      'fmt=png&q=75',
    ]);
    expect(rows[0][1]).toBe(true);
    expect(rows[7][1]).toBe(false);
  });

  test('a height with a width follows the asked aspect ratio, snapped like a width; alone it snaps; fit only with both', async () => {
    const rows = await canonical(['w=200&h=100', 'w=200&h=100&fit=contain', 'h=100', 'w=300&h=300&dpr=2&fit=inside', 'w=100&fit=contain', 'w=200&h=150', 'w=200&h=149']);
    expect(rows.map((r) => r[0])).toEqual([
      'fit=cover&fmt=auto&h=128&q=75&w=256',
      'fit=contain&fmt=auto&h=128&q=75&w=256',
      'fmt=auto&h=128&q=75',
      'fit=inside&fmt=auto&h=640&q=75&w=640',
      'fmt=auto&q=75&w=128',
      // 150 x 256 / 200 = 192, snapped up: unsigned, a width has at most #widths heights
      'fit=cover&fmt=auto&h=256&q=75&w=256',
      'fit=cover&fmt=auto&h=256&q=75&w=256',
    ]);
  });

  test('bad values get 400 with a reason', async () => {
    const rows = await canonical(['w=abc', 'w=0', 'w=9000', 'w=1.5', 'w=100&dpr=4', 'w=100&q=0', 'w=100&fmt=gif', 'w=100&fit=fill', 'w=1&w=2', 'w=%3Cscript%3E']);
    for (const row of rows) {
      expect(row[0]).toBeNull();
      expect(row[1]).toBe(400);
      expect(typeof row[2]).toBe('string');
    }
    expect(rows[4][2]).toMatch(/dpr/);
    expect(rows[8][2]).toMatch(/once/);
  });

  test('signed URLs get exactly what they name, under the current or the previous key', async () => {
    const odd = signImageQuery('/p/shoe.jpg', { w: 333, q: 63 }, KEYS.current);
    const previousKey = signImageQuery('/p/shoe.jpg', { w: 333, h: 111, fit: 'inside' }, KEYS.previous);
    const future = Math.floor(Date.now() / 1000) + 60;
    const expiring = signImageQuery('/p/shoe.jpg', { w: 333 }, KEYS.current, future);
    const rows = await canonical([odd, previousKey, expiring, `${odd}&utm_source=news`]);
    expect(rows[0]).toEqual(['fmt=auto&q=63&w=333', true, null]);
    expect(rows[1]).toEqual(['fit=inside&fmt=auto&h=111&q=75&w=333', true, null]);
    expect(rows[2]).toEqual(['fmt=auto&q=75&w=333', true, future]);
    expect(rows[3][0]).toBe('fmt=auto&q=63&w=333');
  });

  test('tampered, expired, unknown key id and another path are refused with 403 before any lookup', async () => {
    const good = signImageQuery('/p/shoe.jpg', { w: 333 }, KEYS.current);
    const tampered = good.replace('w=333', 'w=334');
    const expired = signImageQuery('/p/shoe.jpg', { w: 333 }, KEYS.current, Math.floor(Date.now() / 1000) - 60);
    const unknownKey = signImageQuery('/p/shoe.jpg', { w: 333 }, { id: 'k9', secret: 'x' });
    const wrongSecret = signImageQuery('/p/shoe.jpg', { w: 333 }, { id: 'k2', secret: 'guess' });
    const rows = await canonical([tampered, expired, unknownKey, wrongSecret]);
    expect(rows.map((r) => r[1])).toEqual([403, 403, 403, 403]);
    expect(rows[1][2]).toMatch(/expired/);
    expect(rows[2][2]).toMatch(/unknown key id/);
    expect(rows[3][2]).toMatch(/does not match/);
    // the same signature on another asset's path
    const [swapped] = await canonical([good], '/p/other.jpg');
    expect(swapped[1]).toBe(403);
  });
});
