-- The edge's internal listener (health and metrics, never published; rendered
-- by infra/render/nginx.ts internalServer): `serve_health` and `serve_metrics`, and
-- the metric families they export. Not to be confused with the internal hop
-- of misses (fetch.lua).
--
-- Request counters are kept per worker by stats.lua and flushed into the
-- shared zone; the gauges are read from their sources when scraped.
local metrics_lib = require "cdn.metrics"
local invalidation = require "cdn.edge.invalidation"
local stats = require "cdn.edge.stats"
local disk = require "cdn.edge.disk"

local header = ngx.header
local ngx_exit = ngx.exit
local say = ngx.say
local log = ngx.log
local WARN = ngx.WARN

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


function _M.serve_health()
    header["Content-Type"] = "application/json"
    say('{"status":"ok","edge":"', settings.id, '","region":"', settings.region,
        '","invalidation":', (ngx.shared.cdn_state:get("connected") or 0) == 1
        and "true" or "false", '}')
end


return _M
