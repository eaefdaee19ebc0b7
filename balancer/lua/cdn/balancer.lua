-- The balancer's phase handlers: pick a region, then the edge that owns the
-- request's cache key on that region's ring; on failure, retry the next edge
-- clockwise (and then the next region), never the same one twice.
local settings_loader = require "cdn.settings"
local key = require "cdn.key"
local ring = require "cdn.balancer.ring"
local metrics_lib = require "cdn.metrics"
local ngx_balancer = require "ngx.balancer"

local var = ngx.var
local header = ngx.header
local ngx_exit = ngx.exit
local say = ngx.say
local now = ngx.now
local log = ngx.log
local ERR = ngx.ERR
local WARN = ngx.WARN
local ipairs = ipairs
local tonumber = tonumber
local sub = string.sub

local _M = { _VERSION = "0.1.0" }

local settings
local rings = {}   -- region name -> ring
local metrics

local health = ngx.shared.cdn_health


function _M.init(settings_path)
    settings = settings_loader.load(settings_path)
    for _, region in ipairs(settings.regions) do
        if #region.edges > 0 then
            rings[region.name] = ring.new(region.edges)
        end
    end
end


function _M.init_worker()
    local err
    metrics, err = metrics_lib.new("cdn_metrics")
    if not metrics then
        log(WARN, "balancer: metrics disabled: ", err)
        return
    end
    metrics:counter("cdn_balancer_requests_total",
        "Requests answered, by status class", { "status_class" })
    metrics:counter("cdn_balancer_upstream_failures_total",
        "Failed attempts to reach an edge, by edge", { "edge" })
    metrics:histogram("cdn_balancer_request_duration_seconds",
        "Time to answer a request")
end


local function is_up(node)
    local down_until = health:get("down:" .. node.id)
    return not down_until or down_until < now()
end


function _M.access()
    local path, err = key.path(var.request_uri)
    if not path then
        ngx.status = 400
        header["Content-Type"] = "text/plain"
        say("bad request: ", err)
        return ngx_exit(400)
    end
    -- The same object always hashes to the same edge, whatever its query string
    -- or variant: variants of an asset are purged together and live together.
    ngx.ctx.hash_key = key.host(var.http_host) .. path
    ngx.ctx.tried = {}
end


local function choose(ctx)
    local tried = ctx.tried
    local function usable(node)
        return not tried[node.id] and is_up(node)
    end
    for _, region in ipairs(settings.order) do
        local r = rings[region]
        if r then
            local node = r:pick(ctx.hash_key, usable)
            if node then
                return node
            end
        end
    end
    -- every edge is down or tried: try any untried edge rather than fail outright
    for _, region in ipairs(settings.order) do
        local r = rings[region]
        if r then
            local node = r:pick(ctx.hash_key, function(n) return not tried[n.id] end)
            if node then
                return node
            end
        end
    end
end


function _M.balance()
    local ctx = ngx.ctx
    if ctx.last then
        -- this is a retry: the previous edge failed; keep it out for a while
        local state = ngx_balancer.get_last_failure()
        if state then
            health:set("down:" .. ctx.last.id, now() + settings.failTimeout)
            if metrics then
                metrics:inc("cdn_balancer_upstream_failures_total", 1, { ctx.last.id })
            end
        end
    else
        local ok, err = ngx_balancer.set_more_tries(settings.retries)
        if not ok then
            log(WARN, "balancer: failed to set retries: ", err)
        end
    end
    local node = choose(ctx)
    if not node then
        log(ERR, "balancer: no edge left to try")
        return ngx_exit(502)
    end
    ctx.tried[node.id] = true
    ctx.last = node
    local ok, err = ngx_balancer.set_current_peer(node.host, node.port)
    if not ok then
        log(ERR, "balancer: failed to set peer ", node.id, ": ", err)
        return ngx_exit(502)
    end
    var.cdn_edge = node.id
end


function _M.log()
    if not metrics then
        return
    end
    local code = tonumber(var.status) or 0
    metrics:inc("cdn_balancer_requests_total", 1, { sub(code, 1, 1) .. "xx" })
    metrics:observe("cdn_balancer_request_duration_seconds",
                    tonumber(var.request_time) or 0)
end


function _M.serve_metrics()
    if not metrics then
        return ngx_exit(503)
    end
    metrics:serve()
end


function _M.serve_health()
    header["Content-Type"] = "application/json"
    say('{"status":"ok"}')
end


return _M
