-- The edge's phase handlers. nginx.conf calls exactly one function per phase;
-- each concern lives in its own module under cdn/edge/.
local settings_loader = require "cdn.settings"
local key = require "cdn.key"
local metrics_lib = require "cdn.metrics"
local generations = require "cdn.edge.generations"
local tags = require "cdn.edge.tags"
local invalidation = require "cdn.edge.invalidation"
local cache_status = require "cdn.edge.cache_status"

local var = ngx.var
local header = ngx.header
local ngx_exit = ngx.exit
local say = ngx.say
local log = ngx.log
local WARN = ngx.WARN
local tonumber = tonumber
local sub = string.sub

local _M = { _VERSION = "0.1.0" }

local settings
local metrics

-- A response that went to the upstream (the cache stored or may store it).
local FETCHED = { MISS = true, EXPIRED = true, REVALIDATED = true }

-- Hop-by-hop and CDN-internal headers the shopper never sees.
local INTERNAL_HEADERS = { "Surrogate-Key", "Surrogate-Control" }


function _M.init(settings_path)
    settings = settings_loader.load(settings_path)
    if settings.redis.passwordFile then
        settings.redis_password = settings_loader.read_secret(settings.redis.passwordFile)
    end
    generations.init()
end


function _M.init_worker()
    generations.init_worker()
    local err
    metrics, err = metrics_lib.new("cdn_metrics")
    if not metrics then
        log(WARN, "edge: metrics disabled: ", err)
    else
        metrics:counter("cdn_edge_requests_total",
            "Requests served, by cache status and status class",
            { "cache_status", "status_class" })
        metrics:counter("cdn_edge_response_bytes_total",
            "Bytes sent to clients, by cache status", { "cache_status" })
        metrics:histogram("cdn_edge_request_duration_seconds",
            "Time to serve a request, by cache status", { "cache_status" })
        metrics:gauge("cdn_edge_invalidation_connected",
            "1 while the edge follows the purge stream")
        metrics:gauge("cdn_edge_invalidation_lag_seconds",
            "Age of the last purge applied when it was applied")
        metrics:counter("cdn_edge_purges_applied_total",
            "Purge messages applied from the stream")
    end
    invalidation.start(settings)
end


-- Computes the cache key (host, decoded path, filtered query, generations) or
-- refuses a request target that tries traversal tricks.
function _M.access()
    local path, err = key.path(var.request_uri)
    if not path then
        ngx.ctx.local_response = true
        ngx.status = 400
        header["Content-Type"] = "text/plain"
        say("bad request: ", err)
        return ngx_exit(400)
    end
    var.cdn_cache_key = key.host(var.http_host) .. path .. "?"
                        .. key.query(var.args) .. "#" .. generations.suffix(path)
    ngx.ctx.path = path
end


function _M.header_filter()
    local ctx = ngx.ctx
    if ctx.local_response then
        return
    end
    local status = var.upstream_cache_status
    local upstream_status = var.upstream_status
    if not status and not upstream_status then
        return -- generated here (e.g. an nginx error page): no Cache-Status
    end
    if FETCHED[status] and ctx.path then
        tags.record(ctx.path, var.upstream_http_surrogate_key)
    end
    header["Cache-Status"] = cache_status.header(header["Cache-Status"],
        cache_status.value(settings.id, status, upstream_status))
    local age = cache_status.age(status, var.upstream_http_date,
                                 var.upstream_http_age)
    if age then
        header["Age"] = age
    end
    for i = 1, #INTERNAL_HEADERS do
        header[INTERNAL_HEADERS[i]] = nil
    end
end


function _M.log()
    if not metrics then
        return
    end
    local status = var.upstream_cache_status or "NONE"
    local code = tonumber(var.status) or 0
    metrics:inc("cdn_edge_requests_total", 1,
                { status, sub(code, 1, 1) .. "xx" })
    metrics:inc("cdn_edge_response_bytes_total",
                tonumber(var.bytes_sent) or 0, { status })
    metrics:observe("cdn_edge_request_duration_seconds",
                    tonumber(var.request_time) or 0, { status })
end


function _M.serve_metrics()
    if not metrics then
        return ngx_exit(503)
    end
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
