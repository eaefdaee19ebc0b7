-- Traffic statistics (the VTS replacement): per-edge counters kept with the
-- shared cdn.metrics module, so /metrics, the JSON document and the HTML page
-- read the same numbers. The log phase only adds to a per-worker buffer, which a
-- timer flushes to the shared dict; worker 0 turns totals into per-second rates
-- and latency quantiles once a second.
local metrics_lib = require "cdn.metrics"
local inflight = require "cdn.balancer.inflight"
local cjson = require "cjson.safe"

local now = ngx.now
local update_time = ngx.update_time
local worker_id = ngx.worker.id
local timer_every = ngx.timer.every
local log = ngx.log
local ERR = ngx.ERR
local pcall = pcall
local ipairs = ipairs
local pairs = pairs
local remove = table.remove
local tostring = tostring
local find = string.find
local sub = string.sub
local floor = math.floor
local encode = cjson.encode
local decode = cjson.decode

local _M = { _VERSION = "0.1.0" }

local FLUSH_INTERVAL = 0.25
local RATE_INTERVAL = 1
local HISTORY = 60
local CLASSES = { "1xx", "2xx", "3xx", "4xx", "5xx" }
local RESULTS = { "hit", "miss", "none" }
local CLASS_OF = { "1xx", "2xx", "3xx", "4xx", "5xx" }

local REQUESTS = "cdn_balancer_requests_total"
local BYTES = "cdn_balancer_response_bytes_total"
local CACHE = "cdn_balancer_edge_cache_total"
local LATENCY = "cdn_balancer_request_duration_seconds"
local FAILURES = "cdn_balancer_upstream_failures_total"
local INVALIDATION_FAILURES = "cdn_balancer_invalidation_failures_total"
local UP = "cdn_balancer_edge_up"
local IN_FLIGHT = "cdn_balancer_edge_requests_in_flight"

local RATES_KEY = "stats:rates"

-- Requests answered without an edge (refused at the front door, or no edge
-- left): counted under this pseudo edge.
local UNROUTED = { id = "-", region = "-" }

local nodes          -- every edge, then UNROUTED
local edges          -- every edge
local regions        -- array of { name, nodes }
local checker        -- cdn.balancer.health instance
local dict           -- holds in-flight counts and the rates document
local metrics
local latency_buckets -- seconds, as every layer's histograms
local history = {}   -- fleet requests/s, oldest first (worker 0)
local prev = {}      -- node id -> totals at the previous rate computation


local function errlog(...)
    log(ERR, "balancer stats: ", ...)
end


-- edge_list: array of nodes ({ id, region, k_load }); region_list: array of
-- { name, nodes }. Called from init_by_lua.
-- buckets: the latency histogram's bounds in seconds (the settings' latencyBuckets).
function _M.init(edge_list, region_list, health_checker, shared, buckets)
    latency_buckets = buckets
    edges = edge_list
    nodes = {}
    for i, n in ipairs(edge_list) do
        nodes[i] = n
    end
    nodes[#nodes + 1] = UNROUTED
    regions = region_list
    checker = health_checker
    dict = shared
end


local function flush()
    if metrics then
        metrics:flush()
    end
    inflight.publish(dict, edges)
end


-- Bucket bounds in ms and non-cumulative counts -> the q-quantile, interpolated
-- inside its bucket like Prometheus' histogram_quantile.
local function quantile(counts, total, q)
    if total <= 0 then
        return nil
    end
    local bounds = latency_buckets
    local rank, seen, lower = q * total, 0, 0
    for i = 1, #bounds do
        local c = counts[i] or 0
        if c > 0 and seen + c >= rank then
            return (lower + (bounds[i] - lower) * (rank - seen) / c) * 1000
        end
        seen = seen + c
        lower = bounds[i]
    end
    return bounds[#bounds] * 1000
end


local function totals(node)
    local t = { requests = 0, status = {}, result = {} }
    local edge = node.labels
    for _, class in ipairs(CLASSES) do
        local v = metrics:get(REQUESTS, { edge[1], edge[2], class })
        t.status[class] = v
        t.requests = t.requests + v
    end
    for _, r in ipairs(RESULTS) do
        t.result[r] = metrics:get(CACHE, { edge[1], edge[2], r })
    end
    t.bytes = metrics:get(BYTES, edge)
    t.count, t.sum, t.buckets = metrics:histogram_values(LATENCY, edge)
    t.failures = metrics:get(FAILURES, { edge[1] })
    return t
end


local function new_window()
    return { requests = 0, bytes = 0, hits = 0, misses = 0, count = 0, sum = 0,
             buckets = {} }
end


local function add_delta(w, cur, old)
    w.requests = w.requests + cur.requests - old.requests
    w.bytes = w.bytes + cur.bytes - old.bytes
    w.hits = w.hits + cur.result.hit - old.result.hit
    w.misses = w.misses + cur.result.miss - old.result.miss
    w.count = w.count + cur.count - old.count
    w.sum = w.sum + cur.sum - old.sum
    for i = 1, #cur.buckets do
        w.buckets[i] = (w.buckets[i] or 0) + cur.buckets[i] - (old.buckets[i] or 0)
    end
end


local function rates_of(w, dt)
    local served = w.hits + w.misses
    return {
        rps = w.requests / dt,
        bps = w.bytes / dt,
        hit_ratio = served > 0 and w.hits / served or nil,
        mean_ms = w.count > 0 and w.sum / w.count * 1000 or nil,
        p50_ms = quantile(w.buckets, w.count, 0.5),
        p95_ms = quantile(w.buckets, w.count, 0.95),
    }
end


-- Worker 0, once a second: rates over the last interval for every edge, region
-- and the fleet, stored as one JSON document every worker can serve.
local function compute_rates()
    flush()
    update_time()
    local t = now()
    local out = { at = t, edges = {}, regions = {} }
    local fleet = new_window()
    local by_region, dt = {}, nil
    for _, node in ipairs(nodes) do
        local cur = totals(node)
        cur.at = t
        local old = prev[node.id]
        if old then
            dt = t - old.at
            local w = new_window()
            add_delta(w, cur, old)
            add_delta(fleet, cur, old)
            if node ~= UNROUTED then
                local rw = by_region[node.region]
                if not rw then
                    rw = new_window()
                    by_region[node.region] = rw
                end
                add_delta(rw, cur, old)
                out.edges[node.id] = rates_of(w, dt)
            end
        end
        prev[node.id] = cur
    end
    if not dt or dt <= 0 then
        return
    end
    for name, w in pairs(by_region) do
        out.regions[name] = rates_of(w, dt)
    end
    out.fleet = rates_of(fleet, dt)
    history[#history + 1] = out.fleet.rps
    if #history > HISTORY then
        remove(history, 1)
    end
    out.history = history
    dict:set(RATES_KEY, encode(out))
end


local function guarded(premature, fn)
    if premature then
        return
    end
    local ok, err = pcall(fn)
    if not ok then
        errlog("failed to update statistics: ", err)
    end
end


function _M.init_worker()
    local err
    metrics, err = metrics_lib.new("cdn_metrics", latency_buckets)
    if not metrics then
        return nil, "failed to create metrics: " .. tostring(err)
    end
    metrics:counter(REQUESTS, "Requests answered, by edge, region and status class",
        { "edge", "region", "status_class" })
    metrics:counter(BYTES, "Bytes sent to clients, by edge and region",
        { "edge", "region" })
    metrics:counter(CACHE, "Responses by the Cache-Status result the edge reported",
        { "edge", "region", "result" })
    metrics:histogram(LATENCY, "Time to answer a request, by edge and region",
        { "edge", "region" })
    metrics:counter(FAILURES, "Connections to an edge that failed, by edge", { "edge" })
    metrics:counter(INVALIDATION_FAILURES, "Invalidations after a write (Location,"
        .. " Content-Location) an edge did not confirm, by edge", { "edge" })
    metrics:gauge(UP, "1 while the edge is in rotation", { "edge", "region" })
    metrics:gauge(IN_FLIGHT, "Requests in progress at the edge", { "edge", "region" })

    -- series keys once per worker: the log phase then only adds to a table
    for _, node in ipairs(nodes) do
        node.labels = { node.id, node.region }
        node.s_requests = {}
        for _, class in ipairs(CLASSES) do
            node.s_requests[class] = metrics:series_key(REQUESTS,
                { node.id, node.region, class })
        end
        node.s_other_class = node.s_requests["5xx"]
        node.s_cache = {}
        for _, r in ipairs(RESULTS) do
            node.s_cache[r] = metrics:series_key(CACHE, { node.id, node.region, r })
        end
        node.s_bytes = metrics:series_key(BYTES, node.labels)
        node.s_latency = metrics:series_key(LATENCY, node.labels)
        node.s_failures = metrics:series_key(FAILURES, { node.id })
        node.s_invalidation_failures = metrics:series_key(INVALIDATION_FAILURES, { node.id })
    end

    local ok
    ok, err = timer_every(FLUSH_INTERVAL, guarded, flush)
    if not ok then
        return nil, "failed to start the statistics flush: " .. tostring(err)
    end
    if worker_id() == 0 then
        ok, err = timer_every(RATE_INTERVAL, guarded, compute_rates)
        if not ok then
            return nil, "failed to start the rate computation: " .. tostring(err)
        end
    end
    return true
end


-- The result the edge reported in Cache-Status (RFC 9211): the edge appends its
-- member last, e.g. "eu-1; hit" or "eu-1; fwd=uri-miss; fwd-status=200".
function _M.cache_result(value)
    if not value then
        return "none"
    end
    if find(value, ",", 1, true) then
        value = sub(value, find(value, ",[^,]*$") + 1)
    end
    if find(value, "; hit", 1, true) or find(value, ";%s*hit") then
        return "hit"
    end
    if find(value, "fwd=", 1, true) then
        return "miss"
    end
    return "none"
end


-- Log phase. node is nil for requests answered without an edge; status is a
-- number; result is cache_result() of the edge's Cache-Status.
function _M.record(node, status, bytes, seconds, result)
    if not metrics then
        return
    end
    node = node or UNROUTED
    local class = node.s_requests[CLASS_OF[floor(status / 100)]] or node.s_other_class
    metrics:inc_series_buffered(class, 1)
    metrics:inc_series_buffered(node.s_bytes, bytes)
    metrics:inc_series_buffered(node.s_cache[result], 1)
    metrics:observe_series_buffered(LATENCY, node.s_latency, seconds)
end


function _M.upstream_failure(node)
    if metrics then
        metrics:inc_series_buffered(node.s_failures, 1)
    end
end


-- An edge did not confirm an invalidation after a write (writes.lua).
function _M.invalidation_failure(node)
    if metrics and node.s_invalidation_failures then
        metrics:inc_series_buffered(node.s_invalidation_failures, 1)
    end
end


local function in_flight(node)
    return inflight.total(dict, node)
end


function _M.serve_metrics()
    if not metrics then
        return nil, "metrics are disabled"
    end
    for i = 1, #nodes - 1 do
        local node = nodes[i]
        metrics:set(UP, checker:is_up(node) and 1 or 0, node.labels)
        metrics:set(IN_FLIGHT, in_flight(node), node.labels)
    end
    flush()
    metrics:serve()
    return true
end


local function summary(t, rates)
    local served = t.result.hit + t.result.miss
    rates = rates or {}
    return {
        requests = t.requests,
        bytes = t.bytes,
        status = t.status,
        hits = t.result.hit,
        misses = t.result.miss,
        hit_ratio = served > 0 and t.result.hit / served or nil,
        failures = t.failures,
        rps = rates.rps or 0,
        bps = rates.bps or 0,
        hit_ratio_now = rates.hit_ratio,
        latency = {
            mean_ms = t.count > 0 and t.sum / t.count * 1000 or nil,
            mean_ms_now = rates.mean_ms,
            p50_ms_now = rates.p50_ms,
            p95_ms_now = rates.p95_ms,
        },
    }
end


local function accumulate(acc, t)
    acc.requests = acc.requests + t.requests
    acc.bytes = acc.bytes + t.bytes
    acc.count = acc.count + t.count
    acc.sum = acc.sum + t.sum
    acc.failures = acc.failures + t.failures
    for _, class in ipairs(CLASSES) do
        acc.status[class] = (acc.status[class] or 0) + t.status[class]
    end
    for _, r in ipairs(RESULTS) do
        acc.result[r] = (acc.result[r] or 0) + t.result[r]
    end
end


local function empty_totals()
    local t = { requests = 0, bytes = 0, count = 0, sum = 0, failures = 0,
                status = {}, result = {} }
    for _, class in ipairs(CLASSES) do
        t.status[class] = 0
    end
    for _, r in ipairs(RESULTS) do
        t.result[r] = 0
    end
    return t
end


-- The status document: live totals and health, rates from the last second.
function _M.document(extra)
    flush()
    local rates = decode(dict:get(RATES_KEY) or "") or {}
    local edge_rates = rates.edges or {}
    local region_rates = rates.regions or {}
    local doc = { generated_at = now(), rate_interval = RATE_INTERVAL,
                  history = rates.history or {}, edges = {}, regions = {} }
    for k, v in pairs(extra or {}) do
        doc[k] = v
    end
    local fleet = empty_totals()
    local up_total, edge_total = 0, 0
    for _, region in ipairs(regions) do
        local acc = empty_totals()
        local up = 0
        for _, node in ipairs(region.nodes) do
            local t = totals(node)
            accumulate(acc, t)
            local e = summary(t, edge_rates[node.id])
            e.id = node.id
            e.region = node.region
            e.health = checker:state(node)
            e.up = e.health.up
            e.in_flight = in_flight(node)
            if e.up then
                up = up + 1
            end
            doc.edges[#doc.edges + 1] = e
        end
        accumulate(fleet, acc)
        local r = summary(acc, region_rates[region.name])
        r.name = region.name
        r.edges_up = up
        r.edges_total = #region.nodes
        up_total = up_total + up
        edge_total = edge_total + #region.nodes
        doc.regions[#doc.regions + 1] = r
    end
    local unrouted = totals(UNROUTED)
    accumulate(fleet, unrouted)
    doc.fleet = summary(fleet, rates.fleet)
    doc.fleet.edges_up = up_total
    doc.fleet.edges_total = edge_total
    doc.fleet.unrouted = unrouted.requests
    return doc
end


function _M.document_json(extra)
    return encode(_M.document(extra))
end


return _M
