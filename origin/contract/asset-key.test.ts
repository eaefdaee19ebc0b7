import { checkAssetKey, rawKeyFromUrl } from './asset-key';

describe('checkAssetKey', () => {
  test.each(['a', 'img/products/shoe-1.jpg', 'A0/b_c.d-e', 'x'.repeat(1024), 'v1x/file', 'healthz/x', 'a..b/c...d'])(
    'accepts %s',
    (key) => {
      expect(checkAssetKey(key)).toEqual({ ok: true, key });
    },
  );

  test.each([
    ['', /empty/],
    ['x'.repeat(1025), /longer than 1024/],
    ['../etc/passwd', /start with a letter or a digit/],
    ['a/../b', /'\.' or '\.\.' path segment/],
    ['a/./b', /'\.' or '\.\.' path segment/],
    ['a/..', /'\.' or '\.\.' path segment/],
    ['a//b', /empty path segment/],
    ['a/', /must not end with '\/'/],
    ['%2e%2e/x', /'%' \(0x25\) at position 0.*percent-encoding/],
    ['a%2fb', /'%' \(0x25\) at position 1/],
    ['a\\b', /'\\' \(0x5C\)/],
    ['a\u0000b', /0x00 at position 1/],
    ['caf\u00e9', /0xE9/],
    ['a b', /0x20/],
    ['v1/assets/x', /reserved/],
    ['metrics', /reserved/],
  ])('refuses %j (%s)', (key, reason) => {
    const check = checkAssetKey(key);
    expect(check.ok).toBe(false);
    expect(!check.ok && check.reason).toMatch(reason);
  });
});

describe('rawKeyFromUrl', () => {
  test('takes the undecoded path after the prefix, without the query', () => {
    expect(rawKeyFromUrl('/v1/assets/a%2Fb?x=1', '/v1/assets/')).toBe('a%2Fb');
    expect(rawKeyFromUrl('/img/a.png#frag', '/')).toBe('img/a.png');
    expect(rawKeyFromUrl('http://host/v1/assets/a', '/v1/assets/')).toBeNull();
  });
});
