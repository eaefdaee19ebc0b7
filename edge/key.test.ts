/** cdn.key (shared by edge and balancer), run inside real nginx. */
import { runLua } from '../test/support/nginx-lua';

async function lua(expr: string): Promise<unknown> {
  const out = await runLua(`local key = require "cdn.key"
local cjson = require "cjson"
ngx.print(cjson.encode({ ${expr} }))`);
  return JSON.parse(out);
}

describe('cdn.key', () => {
  test('hosts are lowercased and lose default ports only', async () => {
    expect(await lua(`key.host("SHOP.example:443"), key.host("shop.example:80"), key.host("Shop.Example:8443"), key.host(nil)`)).toEqual([
      'shop.example',
      'shop.example',
      'shop.example:8443',
      '',
    ]);
  });

  test('paths are decoded; traversal and encoded separators are refused with a reason', async () => {
    const result = (await lua(`
      { key.path("/img/a%20b.jpg?x=1") },
      { key.path("/a/../etc/passwd") },
      { key.path("/a/%2e%2e/b") },
      { key.path("/a%2fb") },
      { key.path("/a%5Cb") },
      { key.path("/a%00b") },
      { key.path("/a/./b") },
      { key.path("/a/..") },
      { key.path("relative") },
      { key.path("/a..b/c.jpg") },
      { key.path("//downloads//file.bin?x=1") }`)) as unknown[][];
    expect(result[0]).toEqual(['/img/a b.jpg']);
    for (const bad of result.slice(1, 9)) {
      expect(bad[0]).toBeNull();
      expect(typeof bad[1]).toBe('string');
    }
    expect(result[9]).toEqual(['/a..b/c.jpg']);
    // slashes merged as nginx merges them before matching locations
    expect(result[10]).toEqual(['/downloads/file.bin']);
  });

  test('queries are sorted and marketing parameters dropped', async () => {
    expect(
      await lua(`key.query("b=2&utm_source=news&a=1&gclid=x&UTM_medium=y&a=0"), key.query(""), key.query("fbclid=1"), key.query("flag&w=100")`),
    ).toEqual(['a=0&a=1&b=2', '', '', 'flag&w=100']);
  });
});

describe('cdn.key negotiation', () => {
  test('Accept-Encoding classes follow q-values', async () => {
    const out = await runLua(`local key = require "cdn.key"
local cjson = require "cjson"
ngx.print(cjson.encode({
  key.accept_encoding("gzip, deflate, br"), key.accept_encoding("gzip;q=0.8, br;q=0.9"),
  key.accept_encoding("br;q=0, gzip"), key.accept_encoding("gzip; q=0"),
  key.accept_encoding("x-brotli-ish"), key.accept_encoding("*"), key.accept_encoding(nil) }))`);
    expect(JSON.parse(out)).toEqual(['br', 'br', 'gzip', 'identity', 'identity', 'br', 'identity']);
  });
});
