/**
 * cdn.edge.s3 (SigV4 through OpenSSL's libcrypto via the FFI), run inside real nginx,
 * against the example AWS publishes for header-based authentication: "GET Object"
 * of examplebucket/test.txt with Range bytes=0-9 on 24 May 2013
 * (https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html).
 */
import { runLua } from '../test/support/nginx-lua';
import { sigV4Failure } from '../test/support/s3rver';

async function lua(body: string): Promise<unknown> {
  return JSON.parse(await runLua(`local s3 = require "cdn.edge.s3"
local cjson = require "cjson"
${body}`));
}

const EXAMPLE = `local signer = s3.new({ access_key = "AKIAIOSFODNN7EXAMPLE",
  secret_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", region = "us-east-1" })`;
const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

describe('cdn.edge.s3', () => {
  test("the libcrypto primitives give SHA-256 and RFC 4231's HMAC-SHA256 test case 2", async () => {
    expect(await lua(`ngx.print(cjson.encode({ s3.hex(s3.sha256("")), s3.hex(s3.hmac("Jefe", "what do ya want for nothing?")) }))`)).toEqual([
      EMPTY_SHA256,
      '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843',
    ]);
  });

  test("AWS's published GET Object example signs to its published signature", async () => {
    const out = await lua(`${EXAMPLE}
local amz_date = s3.amz_date(1369353600)
ngx.print(cjson.encode({ amz_date, signer:authorization("GET", "/test.txt", "", {
  Host = "examplebucket.s3.amazonaws.com", Range = "bytes=0-9",
  ["x-amz-content-sha256"] = "${EMPTY_SHA256}", ["x-amz-date"] = amz_date,
}, "${EMPTY_SHA256}", amz_date) }))`);
    expect(out).toEqual([
      '20130524T000000Z',
      'AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,' +
        'SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,' +
        'Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41',
    ]);
  });

  test('the signing key is derived once per day and a new day derives a new one', async () => {
    const out = (await lua(`${EXAMPLE}
local a = s3.hex(signer:signing_key("20130524"))
local again = s3.hex(signer:signing_key("20130524"))
local b = s3.hex(signer:signing_key("20130525"))
local auth = signer:sign_read("GET", "/bucket/a.txt", "127.0.0.1:9000", 1369353600)
ngx.print(cjson.encode({ a, again, b, auth }))`)) as string[];
    expect(out[0]).toBe(out[1]);
    expect(out[2]).not.toBe(out[0]);
    expect(out[3]).toMatch(/^AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE\/20130524\/us-east-1\/s3\/aws4_request,SignedHeaders=host;x-amz-content-sha256;x-amz-date,Signature=[0-9a-f]{64}$/);
  });

  test("the tests' signature-checking front for s3rver accepts AWS's example and refuses it altered", () => {
    const example = {
      method: 'GET',
      url: '/test.txt',
      headers: {
        host: 'examplebucket.s3.amazonaws.com',
        range: 'bytes=0-9',
        'x-amz-content-sha256': EMPTY_SHA256,
        'x-amz-date': '20130524T000000Z',
        authorization:
          'AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,' +
          'SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,' +
          'Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41',
      },
    };
    const secrets = { AKIAIOSFODNN7EXAMPLE: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY' };
    expect(sigV4Failure(example, secrets)).toBeNull();
    expect(sigV4Failure({ ...example, url: '/test2.txt' }, secrets)).toBe('SignatureDoesNotMatch');
    expect(sigV4Failure({ ...example, headers: { ...example.headers, range: 'bytes=0-10' } }, secrets)).toBe('SignatureDoesNotMatch');
    expect(sigV4Failure(example, { AKIAIOSFODNN7EXAMPLE: 'another secret' })).toBe('SignatureDoesNotMatch');
    expect(sigV4Failure(example, {})).toBe('InvalidAccessKeyId');
    expect(sigV4Failure({ ...example, headers: { host: 'examplebucket.s3.amazonaws.com' } }, secrets)).toBe('AccessDenied');
  });
});
