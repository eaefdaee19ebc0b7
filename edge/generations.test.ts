/** cdn.edge.generations in a real nginx, with zones small enough to fill. */
import { startNginx } from '../test/support/nginx-lua';

test('counters expire after their last purge, and one that comes back starts above any value it had', async () => {
  const nginx = await startNginx(
    `        location = /run {
            content_by_lua_block {
                local g = require "cdn.edge.generations"
                local cjson = require "cjson"
                g.init(1) -- a counter outlives its last purge by 1 s
                local first = g.purge_path("/a")
                local second = g.purge_path("/a")
                local kept = g.suffix("/a")
                ngx.sleep(2.1)
                local gone = g.suffix("/a")
                local again = g.purge_path("/a")
                ngx.print(cjson.encode({ first = first, second = second, kept = kept, gone = gone, again = again }))
            }
        }`,
    { dicts: { cdn_gens: '1m', cdn_tags: '1m' } },
  );
  try {
    const r = JSON.parse(await (await fetch(`${nginx.url}/run`)).text());
    expect(r.second).toBe(r.first + 1);
    // the key part of the path's generation: "<epoch>.<all>.<path>.<prefixes>"
    expect(r.kept.split('.')[2]).toBe(String(r.second));
    expect(r.gone.split('.')[2]).toBe('0');
    expect(r.again).toBeGreaterThan(r.second);
  } finally {
    await nginx.stop();
  }
});

test('a full zone starts over: new epoch, counters dropped, SEQ still growing', async () => {
  const nginx = await startNginx(
    `        location = /run {
            content_by_lua_block {
                local g = require "cdn.edge.generations"
                local cjson = require "cjson"
                g.init()
                local before = { epoch = g.suffix("/x"), seq = g.seq() }
                local n = 0
                -- every purged path costs a counter; a small zone fills up
                while g.suffix("/x") == before.epoch and n < 100000 do
                    n = n + 1
                    g.purge_path("/p/" .. n)
                end
                local keys = ngx.shared.cdn_gens:get_keys(0)
                ngx.print(cjson.encode({ before = before, after = { epoch = g.suffix("/x"), seq = g.seq() },
                    purges = n, keys_left = #keys, purged_after = (g.purge_path("/again") or 0) }))
            }
        }`,
    { dicts: { cdn_gens: '12k', cdn_tags: '12k' } },
  );
  try {
    const res = await fetch(`${nginx.url}/run`);
    const r = JSON.parse(await res.text());
    expect(r.purges).toBeGreaterThan(10);
    expect(r.purges).toBeLessThan(100000);
    expect(r.after.epoch).not.toBe(r.before.epoch);
    expect(r.after.seq).toBeGreaterThan(r.before.seq);
    // the zone was emptied: only the four bookkeeping entries (and the next purge) remain
    expect(r.keys_left).toBeLessThanOrEqual(5);
    // a counter starts from the clock (see the next test)
    expect(r.purged_after).toBeGreaterThan(Date.now() - 60000);
    expect(nginx.errorLog()).toContain('shared zone full');
    expect(nginx.errorLog()).not.toMatch(/\[error\]/);
  } finally {
    await nginx.stop();
  }
});

test('stored paths: a fetch in flight or a stored response makes a write invalidate; a full set or a reset falls back safely', async () => {
  const nginx = await startNginx(
    `        location = /run {
            content_by_lua_block {
                local stored = require "cdn.edge.stored"
                local g = require "cdn.edge.generations"
                local cjson = require "cjson"
                g.init()
                local r = { never = stored.may_exist("/never") }
                stored.fetching("/in-flight")
                r.in_flight = stored.may_exist("/in-flight")
                stored.record("/kept")
                r.kept = stored.may_exist("/kept")
                local n = 0
                while ngx.shared.cdn_stored:get("overflowed") == 0 and n < 100000 do
                    n = n + 1
                    stored.record("/p/" .. n)
                end
                r.recorded, r.after_overflow = n, stored.may_exist("/never")
                g.reset("test")
                r.after_reset, r.kept_after_reset = stored.may_exist("/never"), stored.may_exist("/kept")
                ngx.print(cjson.encode(r))
            }
        }`,
    { dicts: { cdn_gens: '12k', cdn_tags: '12k', cdn_stored: '12k', cdn_fetching: '12k' } },
  );
  try {
    const r = JSON.parse(await (await fetch(`${nginx.url}/run`)).text());
    expect(r).toMatchObject({ never: false, in_flight: true, kept: true, after_overflow: true, after_reset: false, kept_after_reset: false });
    expect(r.recorded).toBeGreaterThan(10);
    expect(r.recorded).toBeLessThan(100000);
  } finally {
    await nginx.stop();
  }
});
