/**
 * A storefront page using image variants (docs/images.md), served through the
 * balancer of the whole native stack and loaded in a real headless browser: Debian's
 * chromium driven by playwright-core (never a browser download), as in
 * balancer-status.test.ts. The browser, not the test, picks the srcset candidate and
 * sends its own Accept; the test checks what it picked, what came back (the bytes
 * decoded again with sharp, and by the page itself) and that the edge serves every
 * object from its cache when the page is loaded again.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';
import { chromium, type BrowserContext, type Page, type Response } from 'playwright-core';
import { up, type UpResult } from '../../infra/targets/native/stack';
import { parseSpec } from '../../infra/model/spec';
import { AVIF_MAX_AUTO_PIXELS } from '../../origin/src/images/transform';
import { REPO_ROOT } from '../support/nginx-lua';

const CHROMIUM = '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

/** The srcset candidates the page offers, taken from the asset API's srcset. */
const CANDIDATES = [384, 640, 1080, 1920];
const PICTURE_AVIF = '/products/shoe.jpg?w=640&fmt=avif';
const PICTURE_FALLBACK = '/products/shoe.jpg?w=640&fmt=jpeg';

let stack: UpResult;
let stateDir: string;
let token: string;
let srcset: string;
const profileDirs: string[] = [];
const contexts: BrowserContext[] = [];

/** One response the page received, as the browser saw it. */
interface Seen {
  url: string;
  status: number;
  contentType: string;
  cacheStatus: string;
  vary: string;
  /** The Accept the browser sent. */
  accept: string;
  resourceType: string;
  /** The received bytes decoded again with sharp (images with a body only). */
  decoded?: { format?: string; width?: number; height?: number };
}

/** An <img> as the page shows it. */
interface Shown {
  id: string;
  currentSrc: string;
  complete: boolean;
  /** Density-corrected for a srcset `w` candidate: the candidate's width / (its width / the `sizes` length). */
  naturalWidth: number;
  /** The decoded bitmap's size in image pixels (createImageBitmap). */
  bitmap: { width: number; height: number } | null;
  decodeError: string | null;
}

interface Load {
  responses: Seen[];
  images: Record<string, Shown>;
  window: { innerWidth: number; devicePixelRatio: number };
}

interface Visitor {
  context: BrowserContext;
  page: Page;
  pageErrors: string[];
  failed: string[];
}

async function put(key: string, body: Buffer | string, contentType: string): Promise<number> {
  const res = await fetch(`${stack.state.origin}/v1/assets/${key}`, {
    method: 'PUT',
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': contentType, 'Cache-Control': 'public, max-age=3600' },
    body,
  });
  await res.arrayBuffer();
  return res.status;
}

/** A 2400x1600 product photo (a backdrop and a block of colour) as a JPEG. */
async function productPhoto(): Promise<Buffer> {
  return sharp({ create: { width: 2400, height: 1600, channels: 3, background: { r: 235, g: 230, b: 220 } } })
    .composite([{ input: { create: { width: 900, height: 600, channels: 3, background: { r: 180, g: 30, b: 40 } } }, left: 750, top: 500 }])
    .jpeg({ quality: 90 })
    .toBuffer();
}

/** The URL of the `${w}w` candidate in a srcset ("url 640w, url 1080w, ..."). */
function candidate(set: string, w: number): string {
  const found = set
    .split(',')
    .map((c) => c.trim().split(/\s+/))
    .find(([, descriptor]) => descriptor === `${w}w`);
  if (!found) throw new Error(`no ${w}w candidate in the asset API's srcset: ${set}`);
  return found[0];
}

function productPage(set: string): string {
  const offered = CANDIDATES.map((w) => `${candidate(set, w)} ${w}w`).join(', ');
  return `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>Shoe</title>
<style>body { margin: 0 } img { display: block; width: 100%; height: auto }</style></head>
<body>
<h1>Shoe</h1>
<img id="hero" src="${candidate(set, 640)}" srcset="${offered}" sizes="100vw" alt="Shoe">
<picture>
  <source type="image/avif" srcset="${PICTURE_AVIF.replace('&', '&amp;')}">
  <img id="thumb" src="${PICTURE_FALLBACK.replace('&', '&amp;')}" alt="Shoe, thumbnail">
</picture>
</body>
</html>
`;
}

/** A visitor with a fresh browser profile (nothing in the browser's caches) and this viewport and device pixel ratio. */
async function visitor(viewport: { width: number; height: number }, deviceScaleFactor: number): Promise<Visitor> {
  const profileDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cdn-storefront-chromium-'));
  profileDirs.push(profileDir);
  const context = await chromium.launchPersistentContext(profileDir, { executablePath: CHROMIUM, args: ARGS, headless: true, viewport, deviceScaleFactor });
  contexts.push(context);
  const page = context.pages()[0] ?? (await context.newPage());
  const v: Visitor = { context, page, pageErrors: [], failed: [] };
  page.on('pageerror', (e) => v.pageErrors.push(String(e)));
  page.on('requestfailed', (r) => v.failed.push(`${r.url()}: ${r.failure()?.errorText}`));
  return v;
}

async function record(res: Response): Promise<Seen> {
  const headers = await res.allHeaders();
  const req = res.request();
  const seen: Seen = {
    url: res.url(),
    status: res.status(),
    contentType: headers['content-type'] ?? '',
    cacheStatus: headers['cache-status'] ?? '',
    vary: headers['vary'] ?? '',
    accept: (await req.allHeaders())['accept'] ?? '',
    resourceType: req.resourceType(),
  };
  if (seen.resourceType === 'image' && seen.status === 200) {
    const meta = await sharp(await res.body()).metadata();
    seen.decoded = { format: meta.format, width: meta.width, height: meta.height };
  }
  return seen;
}

/** Runs `navigate` (a goto or a reload), waits until every image is loaded and decoded, and reports what the page received and shows. */
async function load(v: Visitor, navigate: () => Promise<Response | null>): Promise<Load> {
  const pending: Promise<Seen>[] = [];
  const onResponse = (res: Response) => pending.push(record(res));
  v.page.on('response', onResponse);
  try {
    await navigate();
    // functions, not strings, run in the page (this project compiles without DOM types)
    await v.page.waitForFunction(
      () => {
        const imgs = Array.from((globalThis as any).document.images as ArrayLike<any>);
        return imgs.length === 2 && imgs.every((i) => i.complete && i.naturalWidth > 0);
      },
      undefined,
      { timeout: 30000 },
    );
    const shown = (await v.page.evaluate(async () => {
      const out: unknown[] = [];
      for (const img of Array.from((globalThis as any).document.images as ArrayLike<any>)) {
        let decodeError: string | null = null;
        let bitmap: { width: number; height: number } | null = null;
        try {
          await img.decode();
          const b = await (globalThis as any).createImageBitmap(img);
          bitmap = { width: b.width, height: b.height };
          b.close();
        } catch (e) {
          decodeError = String(e);
        }
        out.push({ id: img.id, currentSrc: img.currentSrc, complete: img.complete, naturalWidth: img.naturalWidth, bitmap, decodeError });
      }
      return out;
    })) as Shown[];
    const window = (await v.page.evaluate(() => ({ innerWidth: (globalThis as any).innerWidth, devicePixelRatio: (globalThis as any).devicePixelRatio }))) as Load['window'];
    return { responses: await Promise.all(pending), images: Object.fromEntries(shown.map((s) => [s.id, s])), window };
  } finally {
    v.page.off('response', onResponse);
  }
}

const pageUrl = () => `${stack.state.balancer}/shop/product.html`;
const imageResponses = (l: Load) => l.responses.filter((r) => r.resourceType === 'image');
const document = (l: Load) => l.responses.filter((r) => r.resourceType === 'document');
/** The single response for `url`. */
function responseFor(l: Load, url: string): Seen {
  const found = l.responses.filter((r) => r.url === url);
  expect(found.map((r) => r.url)).toEqual([url]);
  return found[0];
}
/** Path and query of each image response, sorted. */
const imagePaths = (l: Load) => imageResponses(l).map((r) => { const u = new URL(r.url); return u.pathname + u.search; }).sort();

/** What a <picture> with an AVIF <source> must show, in any viewport: the 640 px AVIF variant. */
function expectPictureAvif(l: Load) {
  const thumb = l.images.thumb;
  expect(thumb.currentSrc).toBe(`${stack.state.balancer}${PICTURE_AVIF}`);
  expect(thumb).toMatchObject({ complete: true, naturalWidth: 640, bitmap: { width: 640, height: 427 }, decodeError: null });
  const res = responseFor(l, thumb.currentSrc);
  expect(res).toMatchObject({ status: 200, contentType: 'image/avif', decoded: { format: 'heif', width: 640, height: 427 } });
}

beforeAll(async () => {
  stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cdn-storefront-'));
  stack = await up({ spec: parseSpec({}), stateDir, repoRoot: REPO_ROOT, prometheus: false, detached: true });
  token = fs.readFileSync(stack.state.adminTokenFile, 'utf8').trim();
  expect(await put('products/shoe.jpg', await productPhoto(), 'image/jpeg')).toBe(201);
  const details = (await (await fetch(`${stack.state.origin}/v1/assets/products/shoe.jpg`, { headers: { Authorization: `Bearer ${token}` } })).json()) as {
    image: { width: number; height: number; srcset: string };
  };
  expect(details.image).toMatchObject({ width: 2400, height: 1600 });
  srcset = details.image.srcset;
  // the API's srcset is absolute on the balancer, the URL the page is served from
  for (const w of CANDIDATES) expect(candidate(srcset, w)).toBe(`${stack.state.balancer}/products/shoe.jpg?w=${w}`);
  expect(await put('shop/product.html', productPage(srcset), 'text/html')).toBe(201);
}, 120000);

afterAll(async () => {
  for (const c of contexts) await c.close().catch(() => undefined);
  await stack?.stop();
  if (stateDir) fs.rmSync(stateDir, { recursive: true, force: true });
  for (const dir of profileDirs) fs.rmSync(dir, { recursive: true, force: true });
});

describe('a storefront page with image variants, in chromium, through the balancer', () => {
  let phone: Visitor;

  test('a phone 400 CSS px wide at DPR 2 (800 device px) gets the 1080w candidate as AVIF; the <picture> gets AVIF', async () => {
    phone = await visitor({ width: 400, height: 800 }, 2);
    const first = await load(phone, () => phone.page.goto(pageUrl()));
    expect(first.window).toEqual({ innerWidth: 400, devicePixelRatio: 2 });

    const html = document(first);
    expect(html).toHaveLength(1);
    expect(html[0]).toMatchObject({ url: pageUrl(), status: 200 });
    expect(html[0].contentType).toMatch(/^text\/html\b/);

    // the browser chose the candidate for 400 x 2 = 800 device px: 1080w (640w is too small)
    const hero = first.images.hero;
    expect(hero.currentSrc).toBe(candidate(srcset, 1080));
    expect(hero.currentSrc.endsWith('?w=1080')).toBe(true);
    expect(hero.complete).toBe(true);
    expect(hero.decodeError).toBeNull();
    // the page decoded 1080x720 pixels; naturalWidth is density-corrected (1080w in 400 px: 2.7x) to the 400 CSS px
    expect(hero.bitmap).toEqual({ width: 1080, height: 720 });
    expect(hero.naturalWidth).toBe(400);
    const heroRes = responseFor(first, hero.currentSrc);
    // Chromium says it takes AVIF, and gets it, at exactly the candidate's width
    expect(heroRes.accept).toContain('image/avif');
    expect(heroRes).toMatchObject({ status: 200, contentType: 'image/avif', decoded: { format: 'heif', width: 1080, height: 720 } });
    // the format followed Accept, so caches must know
    expect(heroRes.vary).toMatch(/\baccept\b/i);

    expectPictureAvif(first);

    // nothing else was fetched: no other candidate, no JPEG fallback, no original
    expect(imagePaths(first)).toEqual(['/products/shoe.jpg?w=1080', PICTURE_AVIF].sort());
    // all three were new to the edge (so the HITs below are the edge's, not a warm-up's)
    for (const r of first.responses) expect({ url: r.url, cacheStatus: r.cacheStatus }).toEqual({ url: r.url, cacheStatus: expect.stringMatching(/; fwd=uri-miss/) });
    expect(phone.pageErrors).toEqual([]);
    expect(phone.failed).toEqual([]);
  }, 90000);

  test('reloading the page (the browser cache cleared, so every request goes out again) is all HITs at the edge', async () => {
    // without this, chromium serves the images from its own cache and only revalidates
    // the page; a response replayed from the browser's cache would carry the first
    // load's "fwd=uri-miss" Cache-Status, so the HIT checks below also prove the requests went out
    const cdp = await phone.context.newCDPSession(phone.page);
    await cdp.send('Network.clearBrowserCache');
    await cdp.detach();
    const again = await load(phone, () => phone.page.reload());

    expect(imagePaths(again)).toEqual(['/products/shoe.jpg?w=1080', PICTURE_AVIF].sort());
    expect(document(again)).toHaveLength(1);
    expect(again.responses).toHaveLength(3);
    for (const r of again.responses) {
      expect({ url: r.url, status: r.status, cacheStatus: r.cacheStatus }).toEqual({ url: r.url, status: 200, cacheStatus: expect.stringMatching(/; hit\b/) });
    }
    expect(document(again)[0].contentType).toMatch(/^text\/html\b/);
    // the cached entries are the same variants: AVIF at the chosen widths
    expect(again.images.hero).toMatchObject({ currentSrc: candidate(srcset, 1080), naturalWidth: 400, bitmap: { width: 1080, height: 720 }, decodeError: null });
    expect(responseFor(again, again.images.hero.currentSrc)).toMatchObject({ contentType: 'image/avif', decoded: { format: 'heif', width: 1080, height: 720 } });
    expect(responseFor(again, again.images.hero.currentSrc).vary).toMatch(/\baccept\b/i);
    expectPictureAvif(again);
    expect(phone.pageErrors).toEqual([]);
    expect(phone.failed).toEqual([]);
  }, 60000);

  let desktop: Load;

  test('a desktop 1440 CSS px wide at DPR 1 gets the 1920w candidate; the page and the <picture> are HITs', async () => {
    const v = await visitor({ width: 1440, height: 900 }, 1);
    desktop = await load(v, () => v.page.goto(pageUrl()));
    expect(desktop.window).toEqual({ innerWidth: 1440, devicePixelRatio: 1 });

    const hero = desktop.images.hero;
    expect(hero.currentSrc).toBe(candidate(srcset, 1920));
    expect(hero.currentSrc.endsWith('?w=1920')).toBe(true);
    expect(hero).toMatchObject({ complete: true, decodeError: null, bitmap: { width: 1920, height: 1280 } });
    // 1920w in 1440 px: 1.33x, so 1440 CSS px
    expect(hero.naturalWidth).toBe(1440);
    const heroRes = responseFor(desktop, hero.currentSrc);
    expect(heroRes.accept).toContain('image/avif');
    expect(heroRes.accept).toContain('image/webp');
    expect(heroRes).toMatchObject({ status: 200, decoded: { width: 1920, height: 1280 } });
    expect(heroRes.vary).toMatch(/\baccept\b/i);
    // a variant no one asked for before: made now
    expect(heroRes.cacheStatus).toMatch(/; fwd=uri-miss/);

    expectPictureAvif(desktop);
    expect(imagePaths(desktop)).toEqual(['/products/shoe.jpg?w=1920', PICTURE_AVIF].sort());
    // what the phone already fetched is served from the edge to this new visitor
    expect(responseFor(desktop, `${stack.state.balancer}${PICTURE_AVIF}`).cacheStatus).toMatch(/; hit\b/);
    expect(document(desktop)).toHaveLength(1);
    expect(document(desktop)[0]).toMatchObject({ status: 200, cacheStatus: expect.stringMatching(/; hit\b/) });
    expect(v.pageErrors).toEqual([]);
    expect(v.failed).toEqual([]);
  }, 90000);

  test('the desktop\'s 1920x1280 variant comes in the best format made at that size for a browser taking AVIF and WebP, not the JPEG', () => {
    // fmt=auto makes AVIF only up to AVIF_MAX_AUTO_PIXELS output pixels (the encode
    // cannot be timed out), then WebP for a browser that takes it (transform.ts
    // chooseFormat); Chromium's Accept lists both
    const expected = 1920 * 1280 <= AVIF_MAX_AUTO_PIXELS ? { contentType: 'image/avif', format: 'heif' } : { contentType: 'image/webp', format: 'webp' };
    const heroRes = responseFor(desktop, desktop.images.hero.currentSrc);
    expect({ contentType: heroRes.contentType, format: heroRes.decoded?.format }).toEqual(expected);
  });
});
