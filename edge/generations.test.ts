/** cdn.edge.generations in a real nginx, with zones small enough to fill. */
import { startNginx } from '../test/support/nginx-lua';

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
    expect(r.purged_after).toBe(1);
    expect(nginx.errorLog()).toContain('shared zone full');
    expect(nginx.errorLog()).not.toMatch(/\[error\]/);
  } finally {
    await nginx.stop();
  }
});
