-- The edge's phase handlers. nginx.conf calls exactly one function per phase;
-- each concern lives in its own module under cdn/edge/.
--
-- Two server blocks run this code. The public one looks up the cache
-- (`cache_key`, `header_filter`); on a miss it fetches through an internal hop
-- (a unix socket) whose `fetch_header_filter` decides freshness before nginx
-- stores the response. The hit path is kept to one set_by_lua and one header
-- filter: an access_by_lua handler alone cost ~10% of a 1 KiB hit here.
local settings_loader = require "cdn.settings"
local key = require "cdn.key"
local metrics_lib = require "cdn.metrics"
local lrucache = require "resty.lrucache"
local generations = require "cdn.edge.generations"
local tags = require "cdn.edge.tags"
local invalidation = require "cdn.edge.invalidation"
local cache_status = require "cdn.edge.cache_status"
local freshness = require "cdn.edge.freshness"
local stats = require "cdn.edge.stats"

local var = ngx.var
local header = ngx.header
local ngx_exit = ngx.exit
local say = ngx.say
local now = ngx.time
local parse_http_time = ngx.parse_http_time
local get_headers = ngx.resp.get_headers
local log = ngx.log
local WARN = ngx.WARN
local tonumber = tonumber
local match = string.match

local _M = { _VERSION = "0.2.0" }

local settings
local metrics

-- (host .. request_uri) -> { seq, key }: computed keys, per worker
local keys
local KEY_CACHE_SIZE = 20000

-- A response that went to the upstream (and may have been stored).
local FETCHED = { MISS = true, EXPIRED = true, REVALIDATED = true }
local UNSAFE_METHODS = { POST = true, PUT = true, DELETE = true, PATCH = true }


function _M.init(settings_path)
    settings = settings_loader.load(settings_path)
    if settings.redis.passwordFile then
        settings.redis_password = settings_loader.read_secret(settings.redis.passwordFile)
    end
    generations.init()
end


function _M.init_worker()
    generations.init_worker()
    keys = lrucache.new(KEY_CACHE_SIZE)
    local err
    metrics, err = metrics_lib.new("cdn_metrics")
    if not metrics then
        log(WARN, "edge: metrics disabled: ", err)
    else
        metrics:counter("cdn_edge_requests_total",
            "Requests served, by cache status and status class",
            { "cache_status", "status_class" })
        metrics:counter("cdn_edge_response_bytes_total",
            "Body bytes sent to clients (from Content-Length), by cache status",
            { "cache_status" })
        metrics:histogram("cdn_edge_upstream_header_seconds",
            "Time until the upstream's response headers arrived, on misses")
        metrics:gauge("cdn_edge_invalidation_connected",
            "1 while the edge follows the purge stream")
        metrics:gauge("cdn_edge_invalidation_lag_seconds",
            "Age of the last purge applied when it was applied")
        metrics:counter("cdn_edge_purges_applied_total",
            "Purge messages applied from the stream")
        stats.start(metrics)
    end
    invalidation.start(settings)
end


-- set_by_lua: the cache key (host, decoded path, filtered query, invalidation
-- generations), or "" when the request target tries traversal tricks (nginx
-- then answers 400 with $cdn_reject as the reason).
function _M.cache_key()
    local host, uri = var.http_host or "", var.request_uri
    local id = host .. uri
    local seq = generations.seq()
    local cached = keys:get(id)
    if cached and cached[1] == seq then
        return cached[2]
    end
    local path, err = key.path(uri)
    if not path then
        var.cdn_reject = err
        return ""
    end
    local k = key.host(host) .. path .. "?" .. key.query(var.args) .. "#"
              .. generations.suffix(path)
    keys:set(id, { seq, k })
    return k
end


-- Fields of the internal X-Cdn-Meta header: stored-at, initial age, ttl.
local function meta_fields(meta)
    local stored, age, ttl = match(meta, "^(%d+) (%d+) (-?%d+)$")
    return tonumber(stored), tonumber(age), tonumber(ttl)
end


local function on_fetched(status)
    local path = key.path(var.request_uri)
    if path then
        tags.record(path, var.upstream_http_surrogate_key)
    end
    local t = tonumber(var.upstream_header_time)
    if t and metrics then
        metrics:observe("cdn_edge_upstream_header_seconds", t)
    end
    return var.upstream_http_x_cdn_meta and status == "MISS"
end


-- Public header filter: Cache-Status (RFC 9211), Age, counters.
function _M.header_filter()
    local status = var.upstream_cache_status
    local upstream_status = var.upstream_status
    if not status and not upstream_status then
        return -- generated here (400, 405, an nginx error page): no Cache-Status
    end
    local t = now()
    local member
    local meta = var.upstream_http_x_cdn_meta
    -- after a revalidation the stored meta is the old one (nginx does not
    -- rewrite stored headers), so only plain reuse reports Age and ttl
    if meta and (status == "HIT" or status == "STALE" or status == "UPDATING") then
        local stored, age, ttl = meta_fields(meta)
        if stored then
            local elapsed = t - stored
            header["Age"] = age + (elapsed > 0 and elapsed or 0)
            member = cache_status.value(settings.id, status, upstream_status,
                                        ttl - elapsed)
        end
    end
    if not member then
        local stored = FETCHED[status] and on_fetched(status)
        member = cache_status.value(settings.id, status, upstream_status, nil, stored)
    end
    header["Cache-Status"] = cache_status.header(var.upstream_http_cache_status, member)

    local method = var.request_method
    if UNSAFE_METHODS[method] then
        local code = ngx.status
        if code >= 200 and code < 400 then
            -- RFC 9111 §4.4: a successful unsafe request invalidates the URL
            local path = key.path(var.request_uri)
            if path then
                generations.purge_path(path)
            end
        end
    end
    stats.count(status or "NONE", ngx.status, tonumber(var.upstream_http_content_length))
end


-- Internal hop header filter: freshness decided once, before nginx stores the
-- response. What browsers must see is kept in X-Cdn-* fields that nginx does not
-- interpret; the public server restores them.
function _M.fetch_header_filter()
    local h = get_headers(100)
    local t = now()
    local d = freshness.decide({
        status = ngx.status,
        now = t,
        authorization = var.http_authorization ~= nil,
        cache_control = h["cache-control"],
        cdn_cache_control = h["cdn-cache-control"],
        surrogate_control = h["surrogate-control"],
        expires = h["expires"],
        date = h["date"],
        age = h["age"],
        vary = h["vary"],
        parse_http_time = parse_http_time,
        grace = settings.grace,
    })
    header["X-Cdn-Cache-Control"] = h["cache-control"]
    header["X-Cdn-Expires"] = h["expires"]
    header["Expires"] = nil
    header["Age"] = nil
    header["CDN-Cache-Control"] = nil
    header["Surrogate-Control"] = nil
    if not d.store then
        header["Cache-Control"] = nil
        header["X-Accel-Expires"] = 0
        return
    end
    -- nginx reads stale-* from Cache-Control only when it comes before
    -- X-Accel-Expires, which is why both are rewritten here in that order.
    header["Cache-Control"] = "stale-while-revalidate=" .. d.swr
                              .. ", stale-if-error=" .. d.sie
    local ttl = d.revalidate and -1 or d.ttl
    -- "@1" stores the response already expired: revalidated before every reuse
    header["X-Accel-Expires"] = ttl > 0 and ttl or "@1"
    header["X-Cdn-Meta"] = t .. " " .. d.age .. " " .. ttl
end


function _M.serve_metrics()
    if not metrics then
        return ngx_exit(503)
    end
    stats.flush()
    local state = ngx.shared.cdn_state
    metrics:set("cdn_edge_invalidation_connected", state:get("connected") or 0)
    metrics:set("cdn_edge_invalidation_lag_seconds", state:get("lag_seconds") or 0)
    metrics:set("cdn_edge_purges_applied_total", state:get("applied_total") or 0)
    metrics:serve()
end


function _M.serve_health()
    header["Content-Type"] = "application/json"
    say('{"status":"ok","edge":"', settings.id, '","region":"', settings.region,
        '","invalidation":', (ngx.shared.cdn_state:get("connected") or 0) == 1
        and "true" or "false", '}')
end


return _M
