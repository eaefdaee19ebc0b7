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

describe('cdn.balancer.ring bounded loads', () => {
  test('a cold key stays on its owner; a loaded owner is skipped for the next edge clockwise', async () => {
    const out = await runLua(`
      local ring = require "cdn.balancer.ring"
      local cjson = require "cjson"
      local nodes = { { id = "eu-1" }, { id = "eu-2" }, { id = "eu-3" }, { id = "eu-4" } }
      local r = ring.new(nodes)
      local k = "shop.example/hot.jpg"
      local owner = r:pick(k)
      local second = r:pick(k, function(n) return n ~= owner end)
      local all = { true, true, true, true }
      local idle = { 0, 0, 0, 0 }
      local res = {}
      res.idle = r:pick_bounded(k, all, idle, 1.25).id == owner.id
      -- the owner holds 10 of 10 in flight: cap = ceil(1.25 * 11 / 4) = 4
      local loads = { 0, 0, 0, 0 }
      for i, n in ipairs(nodes) do if n == owner then loads[i] = 10 end end
      res.spilled = r:pick_bounded(k, all, loads, 1.25).id
      res.second = second.id
      -- a down owner is skipped the same way; nothing usable gives nil
      local usable = {}
      for i, n in ipairs(nodes) do usable[i] = n ~= owner end
      res.down = r:pick_bounded(k, usable, idle, 1.25).id
      res.none = r:pick_bounded(k, { false, false, false, false }, idle, 1.25) == nil
      -- simulate 40 concurrent requests for one key: nobody exceeds the bound
      local held = { 0, 0, 0, 0 }
      local max_seen = 0
      for _ = 1, 40 do
          local _, idx = r:pick_bounded(k, all, held, 1.25)
          held[idx] = held[idx] + 1
      end
      for i = 1, 4 do if held[i] > max_seen then max_seen = held[i] end end
      res.max = max_seen
      ngx.print(cjson.encode(res))`);
    const r = JSON.parse(out);
    expect(r.idle).toBe(true);
    expect(r.spilled).toBe(r.second);
    expect(r.down).toBe(r.second);
    expect(r.none).toBe(true);
    // 40 in flight over 4 edges: at most ceil(1.25 * 40 / 4) = 13 on one
    expect(r.max).toBeLessThanOrEqual(13);
  });
});
