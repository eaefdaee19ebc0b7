-- The edge's internal listener (health and metrics, never published; rendered
-- by infra/render/nginx.ts internalServer): `serve_health` and `serve_metrics`, and
-- the metric families they export; `serve_invalidate`, the balancer's
-- invalidation of what a write answered by another edge named (RFC 9111 §4.4,
-- balancer/lua/cdn/balancer/writes.lua). Not to be confused with the internal hop
-- of misses (fetch.lua).
--
-- Request counters are kept per worker by stats.lua and flushed into the
-- shared zone; the gauges are read from their sources when scraped.
local metrics_lib = require "cdn.metrics"
local invalidation = require "cdn.edge.invalidation"
local stats = require "cdn.edge.stats"
local disk = require "cdn.edge.disk"
local writes = require "cdn.edge.writes"

local header = ngx.header
local ngx_exit = ngx.exit
local say = ngx.say
local log = ngx.log
local WARN = ngx.WARN
local get_method = ngx.req.get_method
local get_uri_args = ngx.req.get_uri_args
local type = type
local byte = string.byte
local find = string.find

local _M = { _VERSION = "0.1.0" }

local settings
local metrics


-- init_worker_by_lua (from edge.lua's init_worker): the worker's metrics
-- object, or nil when the zone is unusable (the edge serves without it).
function _M.init_worker(s)
    settings = s
    local err
    metrics, err = metrics_lib.new("cdn_metrics", settings.latencyBuckets)
    if not metrics then
        log(WARN, "edge: metrics disabled: ", err)
        return nil
    end
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
        "While connected: age of the last purge when applied; while cut off"
        .. " from the stream: seconds since it last heard from it")
    metrics:counter("cdn_edge_collapsed_total",
        "Requests that waited for another request's fetch of the same object"
        .. " and were answered with it (Cache-Status: collapsed)")
    -- exported from the start (at 0), not from the first collapse on
    metrics:inc("cdn_edge_collapsed_total", 0)
    metrics:counter("cdn_edge_purges_applied_total",
        "Purge messages applied from the stream")
    metrics:gauge("cdn_edge_cache_filesystem_size_bytes",
        "Size of the filesystem that holds the disk cache")
    metrics:gauge("cdn_edge_cache_filesystem_avail_bytes",
        "Bytes still available on the filesystem that holds the disk cache")
    stats.start(metrics)
    return metrics
end


function _M.serve_metrics()
    if not metrics then
        return ngx_exit(503)
    end
    stats.flush()
    local state = ngx.shared.cdn_state
    metrics:set("cdn_edge_invalidation_connected", state:get("connected") or 0)
    local cut_off = invalidation.disconnected_for()
    metrics:set("cdn_edge_invalidation_lag_seconds",
                cut_off > 0 and cut_off or (state:get("lag_seconds") or 0))
    metrics:set("cdn_edge_purges_applied_total", state:get("applied_total") or 0)
    local size, avail = disk.usage(ngx.config.prefix() .. "cache")
    if size then
        metrics:set("cdn_edge_cache_filesystem_size_bytes", size)
        metrics:set("cdn_edge_cache_filesystem_avail_bytes", avail)
    end
    metrics:serve()
end


-- Paths one POST /invalidate may name (the balancer sends two at most).
local MAX_INVALIDATE_PATHS = 16


local function refuse(status, reason)
    ngx.status = status
    header["Content-Type"] = "text/plain"
    say(reason)
    return ngx_exit(status)
end


-- POST /invalidate?path=<path>[&path=...]: invalidates each path, a cache-key
-- path (cdn.key: decoded, normalised, no query; URI-escaped in the query), as a
-- write answered here would (writes.lua): only where a response may be stored.
-- 204, or 4xx with the reason.
function _M.serve_invalidate()
    header["Cache-Control"] = "no-store"
    if get_method() ~= "POST" then
        header["Allow"] = "POST"
        return refuse(405, "POST only")
    end
    local args, err = get_uri_args(MAX_INVALIDATE_PATHS + 1)
    if err == "truncated" then
        return refuse(400, "too many arguments")
    end
    local paths = args.path
    if type(paths) ~= "table" then
        paths = { paths }
    end
    if #paths == 0 or #paths > MAX_INVALIDATE_PATHS then
        return refuse(400, "1 to " .. MAX_INVALIDATE_PATHS .. " path arguments expected")
    end
    for i = 1, #paths do
        local path = paths[i]
        if type(path) ~= "string" or byte(path, 1) ~= 47 or find(path, "\0", 1, true) then
            return refuse(400, "each path must be a cache-key path starting with /")
        end
    end
    for i = 1, #paths do
        writes.invalidate_path(paths[i])
    end
    require("cdn.edge").reread_purges()
    return ngx_exit(204)
end


function _M.serve_health()
    header["Content-Type"] = "application/json"
    say('{"status":"ok","edge":"', settings.id, '","region":"', settings.region,
        '","invalidation":', (ngx.shared.cdn_state:get("connected") or 0) == 1
        and "true" or "false", '}')
end


return _M
