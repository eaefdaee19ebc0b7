-- wrk script: a storefront mix against the CDN (balancer or one edge).
--
--   wrk -t2 -c16 -d30s -s load/load_tests.lua http://127.0.0.1:8080
--   (or load/load_tests.sh, which seeds the catalogue, purges during the run and
--   refuses anything but 127.0.0.1)
--
-- Paths: product images /<prefix>/products/p-<i>.jpg and bundles /<prefix>/bundles/b-<i>.js,
-- ranks drawn from Zipf(s) (a few hot products, a long tail), a few variants (?w=),
-- marketing parameters the edges drop from the cache key, and ~2% of 404s.
-- Environment: CDN_LOAD_PREFIX (shop), CDN_LOAD_IMAGES (200), CDN_LOAD_BUNDLES (50),
-- CDN_LOAD_ZIPF_S (0.9), CDN_LOAD_SEED (42).
--
-- Plain wrk is closed-loop: it understates tails (docs/design-notes.md §2). Use wrk2
-- (-R) or k6 (load/k6/) for latency SLOs; this script is for throughput and hit ratio.

local prefix = os.getenv("CDN_LOAD_PREFIX") or "shop"
local images = tonumber(os.getenv("CDN_LOAD_IMAGES") or "200")
local bundles = tonumber(os.getenv("CDN_LOAD_BUNDLES") or "50")
local s = tonumber(os.getenv("CDN_LOAD_ZIPF_S") or "0.9")
local seed = tonumber(os.getenv("CDN_LOAD_SEED") or "42")

local variants = { "", "", "", "?w=200", "?w=800", "?utm_source=newsletter&utm_medium=email" }

-- the catalogue, interleaved so that both kinds have popular members
local keys = {}
for i = 0, math.max(images, bundles) - 1 do
    if i < images then keys[#keys + 1] = "/" .. prefix .. "/products/p-" .. i .. ".jpg" end
    if i < bundles then keys[#keys + 1] = "/" .. prefix .. "/bundles/b-" .. i .. ".js" end
end

-- Zipf(s) by inverse CDF
local cdf, total = {}, 0
for i = 1, #keys do
    total = total + 1 / i ^ s
    cdf[i] = total
end
for i = 1, #keys do cdf[i] = cdf[i] / total end

local function rank()
    local u, lo, hi = math.random(), 1, #keys
    while lo < hi do
        local mid = math.floor((lo + hi) / 2)
        if cdf[mid] < u then lo = mid + 1 else hi = mid end
    end
    return lo
end

local threads = {}
local counter = 0

function setup(thread)
    counter = counter + 1
    thread:set("id", counter)
    threads[#threads + 1] = thread
end

function init(args)
    math.randomseed(seed + id)
    hits, misses, statuses = 0, 0, {}
end

function request()
    local path
    if math.random() < 0.02 then
        path = "/" .. prefix .. "/products/missing-" .. math.random(50) .. ".jpg"
    else
        path = keys[rank()] .. variants[math.random(#variants)]
    end
    return wrk.format("GET", path, { ["Accept-Encoding"] = "gzip, br" })
end

function response(status, headers, body)
    local cs = headers["Cache-Status"] or headers["cache-status"] or ""
    if cs:find(";%s*hit") then hits = hits + 1 else misses = misses + 1 end
    statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
    local h, m, by = 0, 0, {}
    for _, t in ipairs(threads) do
        h = h + t:get("hits")
        m = m + t:get("misses")
        for code, n in pairs(t:get("statuses")) do by[code] = (by[code] or 0) + n end
    end
    io.write("------------------------------\n")
    io.write(string.format("storefront mix: %d keys, Zipf(s=%.2f)\n", #keys, s))
    io.write(string.format("hit ratio (Cache-Status): %.4f (%d hits, %d other)\n", (h + m) > 0 and h / (h + m) or 0, h, m))
    for code, n in pairs(by) do io.write(string.format("status %s: %d\n", code, n)) end
    for _, p in ipairs({ 50, 90, 99, 99.9 }) do
        io.write(string.format("latency p%s: %.2f ms\n", p, latency:percentile(p) / 1000))
    end
    io.write(string.format("errors: connect %d, read %d, write %d, status %d, timeout %d\n",
        summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.status, summary.errors.timeout))
end
