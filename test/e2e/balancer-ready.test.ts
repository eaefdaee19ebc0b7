/**
 * The balancer's public readiness answer, GET /.well-known/cdn-ready (what the aws
 * target's readiness check polls after `pulumi up` creates the instances): 200 only
 * when every edge has passed a health check and is in rotation, 503 otherwise, with
 * nothing else in it; answered by the balancer itself, never sent to an edge.
 */
import { READY_PATH } from '../../balancer/render';
import { waitFor } from '../support/http';
import { echo, startBalancer, startFakeEdge, stopBalancerAndEdges, type BalancerHandle, type FakeEdge } from './balancer-harness';

let edges: FakeEdge[];
let balancer: BalancerHandle;

const ready = () => echo(balancer.url, READY_PATH);

beforeAll(async () => {
  edges = await Promise.all([startFakeEdge('eu-1', 'eu'), startFakeEdge('us-1', 'us')]);
}, 30000);

afterAll(async () => {
  expect(await stopBalancerAndEdges(balancer, edges, ['while connecting to upstream'])).toEqual([]);
});

describe('balancer readiness (/.well-known/cdn-ready)', () => {
  test('not ready while an edge has never passed a check: 503 from the start, and it stays so', async () => {
    await edges[1].kill();
    balancer = await startBalancer({ regions: [{ name: 'eu', edges: 1 }, { name: 'us', edges: 1 }] }, edges);
    // across several rounds of checks (interval 1 s): us-1 never answers
    for (let i = 0; i < 5; i++) {
      const r = await ready();
      expect(r.status).toBe(503);
      await new Promise((res) => setTimeout(res, 300));
    }
    // shoppers are still served by the edge that is up
    expect((await echo(balancer.url, '/a.css')).edge).toBe('eu-1');
  }, 20000);

  test('ready (200) once every edge is checked and in rotation; the answer names nothing and is never cached', async () => {
    await edges[1].start();
    expect(await waitFor(async () => (await ready()).status === 200, 6000, 50)).toBeGreaterThanOrEqual(0);
    const r = await ready();
    expect(r.edge).toBeNull(); // not an edge's echo: the balancer answered itself
    expect(r.json).toBeNull();
    expect(r.headers['cache-control']).toBe('no-store');
    expect(r.headers['content-type']).toMatch(/^text\/plain/);
    // the whole body is one word: no edge ids, counts or revision
    const body = await (await fetch(`${balancer.url}${READY_PATH}`)).text();
    expect(body).toBe('ready\n');
    expect(body).not.toMatch(/eu-1|us-1|revision/);
  }, 20000);

  test('an edge going down turns it to 503 (and back once the edge rises); other methods are refused', async () => {
    await edges[0].kill();
    expect(await waitFor(async () => (await ready()).status === 503, 4000, 50)).toBeGreaterThanOrEqual(0);
    expect(await (await fetch(`${balancer.url}${READY_PATH}`)).text()).toBe('not ready\n');
    await edges[0].start();
    expect(await waitFor(async () => (await ready()).status === 200, 6000, 50)).toBeGreaterThanOrEqual(0);
    const post = await echo(balancer.url, READY_PATH, { method: 'POST', body: 'x' });
    expect(post.status).toBe(405);
    expect(post.edge).toBeNull();
    expect((await echo(balancer.url, READY_PATH, { method: 'HEAD' })).status).toBe(200);
  }, 20000);
});
