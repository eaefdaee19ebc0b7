/**
 * cdn.edge.bucket's choice of what goes to the bucket, inside real nginx: exactly the
 * keys the origin's own rules (checkAssetKey) accept, from the settings the renderer
 * writes. Anything else stays with the origin, which answers it (400, its routes, /_v/).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { bucketSettings } from './render';
import { debianLayout } from '../infra/model/layout';
import { parseSpec } from '../infra/model/spec';
import { checkAssetKey } from '../origin/contract/asset-key';
import { REPO_ROOT, runLua } from '../test/support/nginx-lua';

const PATHS = [
  '/a.jpg',
  '/products/shoe-1.JPG',
  '/a/b/c_d.e-f.txt',
  '/.cdn-tmp/0b6f',
  '/_v/0123/a.jpg',
  '/v1/assets',
  '/v1',
  '/v10/a.jpg',
  '/healthz',
  '/healthz/x',
  '/docs/openapi.json',
  '/docs/other.json',
  '/a//b',
  '/a/',
  '/a/./b',
  '/a/../b',
  '/a/..',
  '/a..b',
  '/a%2fb',
  '/a b',
  '/a+b',
  '/',
  `/${'k'.repeat(1024)}`,
  `/${'k'.repeat(1025)}`,
];

test("the bucket is asked for exactly the keys the origin's rules accept", async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cdn-bucket-test-'));
  try {
    fs.writeFileSync(path.join(dir, 's3-access-key'), 'AK\n', { mode: 0o600 });
    fs.writeFileSync(path.join(dir, 's3-secret-key'), 'SK\n', { mode: 0o600 });
    const spec = parseSpec({ storage: { kind: 's3', endpoint: 'http://127.0.0.1:9000', bucket: 'shop-assets', accessKeySecret: 'A', secretKeySecret: 'B' } });
    const settings = bucketSettings(spec, debianLayout({ repoRoot: REPO_ROOT, stateDir: dir, secretsDir: dir }))!;
    const out = await runLua(`local bucket = require "cdn.edge.bucket"
local cjson = require "cjson"
bucket.init(cjson.decode(${JSON.stringify(JSON.stringify(settings))}))
local paths = cjson.decode(${JSON.stringify(JSON.stringify(PATHS))})
local claimed = {}
for i = 1, #paths do
  claimed[i] = bucket.claim("GET", paths[i]) or false
end
ngx.print(cjson.encode({ claimed, bucket.claim("POST", "/a.jpg") or false, bucket.claim("HEAD", "/a.jpg") or false }))`);
    const [claimed, post, head] = JSON.parse(out) as [(string | false)[], string | false, string | false];
    const expected = PATHS.map((p) => (checkAssetKey(p.slice(1)).ok ? `/shop-assets${p}` : false));
    expect(claimed).toEqual(expected);
    expect(expected.filter(Boolean).length).toBeGreaterThanOrEqual(6);
    expect([post, head]).toEqual([false, '/shop-assets/a.jpg']);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
