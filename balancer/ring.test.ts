/** The consistent-hash ring (cdn.balancer.ring), run inside real nginx. */
import { runLua } from '../test/support/nginx-lua';

describe('cdn.balancer.ring', () => {
  test('spreads keys evenly and moves only the removed edge\'s keys', async () => {
    const out = await runLua(`
      local ring = require "cdn.balancer.ring"
      local cjson = require "cjson"
      local four = ring.new({ { id = "eu-1" }, { id = "eu-2" }, { id = "eu-3" }, { id = "eu-4" } })
      local three = ring.new({ { id = "eu-1" }, { id = "eu-2" }, { id = "eu-4" } })
      local counts, moved, wrongly_moved = {}, 0, 0
      local N = 20000
      for i = 1, N do
          local k = "shop.example/img/product-" .. i .. ".jpg"
          local a = four:pick(k).id
          local b = three:pick(k).id
          counts[a] = (counts[a] or 0) + 1
          if a ~= b then
              moved = moved + 1
              if a ~= "eu-3" then wrongly_moved = wrongly_moved + 1 end
          end
      end
      -- skip an edge: the next one clockwise, and nil when none is usable
      local k = "shop.example/x"
      local first = four:pick(k).id
      local second = four:pick(k, function(n) return n.id ~= first end).id
      local none = four:pick(k, function() return false end)
      ngx.print(cjson.encode({ counts = counts, moved = moved, wrongly = wrongly_moved,
          n = N, first = first, second = second, none = none == nil,
          stable = four:pick(k).id == first }))`);
    const r = JSON.parse(out);
    const counts = Object.values(r.counts) as number[];
    expect(counts).toHaveLength(4);
    const mean = r.n / 4;
    expect(Math.max(...counts) / mean).toBeLessThan(1.25);
    // removing one of four edges moves about a quarter of the keys, all of them its own
    expect(r.wrongly).toBe(0);
    expect(r.moved / r.n).toBeGreaterThan(0.15);
    expect(r.moved / r.n).toBeLessThan(0.35);
    expect(r.second).not.toBe(r.first);
    expect(r.none).toBe(true);
    expect(r.stable).toBe(true);
  });
});
