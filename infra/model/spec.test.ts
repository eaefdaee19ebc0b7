import { CdnError } from './errors';
import { edgeIdentities, parseSpec, regionOrder } from './spec';

function errorOf(input: unknown): CdnError {
  try {
    parseSpec(input);
  } catch (err) {
    return err as CdnError;
  }
  throw new Error('expected parseSpec to throw');
}

describe('parseSpec', () => {
  test('defaults give two regions of two edges on filesystem storage', () => {
    const spec = parseSpec({});
    expect(spec.regions).toEqual([
      { name: 'eu', edges: 2 },
      { name: 'us', edges: 2 },
    ]);
    expect(spec.storage).toEqual({ kind: 'filesystem' });
    expect(edgeIdentities(spec).map((e) => e.id)).toEqual(['eu-1', 'eu-2', 'us-1', 'us-2']);
    expect(regionOrder(spec)).toEqual(['eu', 'us']);
  });

  test('the balancer section is optional and fully defaulted', () => {
    expect(parseSpec({}).balancer).toEqual({
      trustedProxies: [],
      regionHeader: 'X-CDN-Region',
      cidrRegions: [],
      health: { interval: 1, timeout: 0.5, fall: 2, rise: 2 },
      boundedLoad: 1.25,
      boundedLoadFloor: 128,
      retries: 1,
      connectTimeout: 1,
      maxConnsPerClient: 256,
      maxRequestBody: '16m',
      clientTimeout: 10,
    });
    const b = parseSpec({ balancer: { health: { fall: 3 }, hosts: ['shop.example'], cidrRegions: [{ cidr: '2001:db8::/32', region: 'us' }] } }).balancer;
    expect(b.health).toEqual({ interval: 1, timeout: 0.5, fall: 3, rise: 2 });
    expect(b.hosts).toEqual(['shop.example']);
  });

  test('the default region goes first in the fallback order', () => {
    expect(regionOrder(parseSpec({ regions: [{ name: 'eu' }, { name: 'us' }, { name: 'ap' }], defaultRegion: 'us' }))).toEqual(['us', 'eu', 'ap']);
  });

  test.each([
    [{ regions: [] }, 'regions: at least one region is needed'],
    [{ regions: [{ name: 'EU', edges: 1 }] }, 'regions[0].name: expected a lowercase name'],
    [{ regions: [{ name: 'eu', edges: 0 }] }, 'regions[0].edges'],
    [{ regions: [{ name: 'eu' }, { name: 'eu' }] }, 'regions[1].name: duplicate region "eu"'],
    [{ defaultRegion: 'mars' }, 'defaultRegion: unknown region "mars"'],
    [{ cache: { maxSize: 'lots' } }, 'cache.maxSize: expected a size such as 512m or 10g'],
    [{ ports: { edge: 70000 } }, 'ports.edge'],
    [{ origins: [{ match: 'Shop Example', url: 'http://127.0.0.1:8000' }] }, 'origins[0].match'],
    [{ origins: [{ match: '*', url: 'ftp://x' }] }, 'origins[0].url'],
    [{ storage: { kind: 'tape' } }, 'storage'],
    [
      { storage: { kind: 's3', endpoint: 'http://127.0.0.1:9000', bucket: 'shop-assets', accessKeySecret: 'A', secretKeySecret: 'B', edgeAccessKeySecret: 'C' } },
      'storage.edgeSecretKeySecret: edgeAccessKeySecret and edgeSecretKeySecret go together',
    ],
    [{ regionz: [] }, 'regionz'],
    [{ balancer: { trustedProxies: ['10.0.0.0/33'] } }, 'balancer.trustedProxies[0]: expected a CIDR'],
    [{ balancer: { cidrRegions: [{ cidr: '10.0.0.0/8', region: 'mars' }] } }, 'balancer.cidrRegions[0].region: unknown region "mars"'],
    [{ balancer: { cidrRegions: [{ cidr: 'ten', region: 'eu' }] } }, 'balancer.cidrRegions[0].cidr'],
    [{ balancer: { health: { interval: 0 } } }, 'balancer.health.interval'],
    [{ balancer: { health: { fall: 1.5 } } }, 'balancer.health.fall'],
    [{ balancer: { boundedLoad: 0.9 } }, 'balancer.boundedLoad'],
    [{ balancer: { tls: { cert: '/c.pem' } } }, 'balancer.tls.key'],
    [{ balancer: { hosts: ['Shop.Example'] } }, 'balancer.hosts[0]: expected a lowercase host'],
    [{ balancer: { regionHeader: 'X Region' } }, 'balancer.regionHeader'],
    [{ balancer: { sticky: true } }, 'balancer'],
    [{ cache: { bypassCookies: ['session', 'cart id'] } }, 'cache.bypassCookies[1]: expected a cookie name (an RFC 6265 token'],
    [{ cache: { bypassCookies: ['a;b'] } }, 'cache.bypassCookies[0]'],
    [{ cache: { bypassCookies: [''] } }, 'cache.bypassCookies[0]'],
    [{ cache: { slice: { prefixes: ['downloads/'] } } }, 'cache.slice.prefixes[0]: expected a path prefix'],
    [{ cache: { slice: { prefixes: ['/a b/'] } } }, 'cache.slice.prefixes[0]'],
    [{ cache: { slice: { prefixes: [] } } }, 'cache.slice.prefixes'],
    [{ cache: { slice: { prefixes: ['/d/'], size: '1mb' } } }, 'cache.slice.size'],
  ])('%j is refused naming the field', (input, message) => {
    const err = errorOf(input);
    expect(err).toBeInstanceOf(CdnError);
    expect(err.code).toBe('CDN_ERR_SPEC_INVALID');
    expect(err.message).toContain(message);
  });
});
