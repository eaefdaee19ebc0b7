-- The balancer's phase handlers. nginx.conf calls exactly one function per phase;
-- each concern lives in its own module under cdn/balancer/:
--   front   front-door checks and the shopper's region
--   ring    consistent hashing with bounded loads
--   health  active and passive health checks, shared by workers
--   stats   traffic statistics for /status, /status.json and /metrics
--   certificates  expiry of the TLS certificates served, for /metrics
-- A request starts in its region (trusted header, client network, default) and
-- goes to the edge owning its object on that region's ring, unless that edge is
-- down or holds more than its share of requests in flight; a failed attempt is
-- retried on the next edge (idempotent requests only), and a region without a
-- usable edge hands over to the next region in the configured order.
local settings_loader = require "cdn.settings"
local key = require "cdn.key"
local ring_lib = require "cdn.balancer.ring"
local health_lib = require "cdn.balancer.health"
local stats = require "cdn.balancer.stats"
local front = require "cdn.balancer.front"
local status_page = require "cdn.balancer.status_page"
local certificates = require "cdn.balancer.certificates"
local ngx_balancer = require "ngx.balancer"

local var = ngx.var
local header = ngx.header
local ngx_exit = ngx.exit
local say = ngx.say
local ngx_print = ngx.print
local log = ngx.log
local ERR = ngx.ERR
local WARN = ngx.WARN
local ipairs = ipairs
local tostring = tostring
local tonumber = tonumber
local error = error
local set_current_peer = ngx_balancer.set_current_peer
local set_more_tries = ngx_balancer.set_more_tries
local get_last_failure = ngx_balancer.get_last_failure
local now = ngx.now
local start_time = ngx.req.start_time

local _M = { _VERSION = "0.2.0" }

local HEALTH_DICT = "cdn_health"

-- RFC 9110 §9.2.2; nginx itself never retries POST, PATCH or LOCK either.
local IDEMPOTENT = { GET = true, HEAD = true, OPTIONS = true, TRACE = true,
                     PUT = true, DELETE = true }

local settings
local revision
local rings = {}      -- region name -> ring over its edges
local fallback = {}   -- region name -> array of rings, that region first
local all_rings = {}  -- rings in the configured order
local checker
local shared          -- the health dict; also holds in-flight counts
local factor
local retries


function _M.init(settings_path)
    settings = settings_loader.load(settings_path)
    revision = settings.revision
    shared = ngx.shared[HEALTH_DICT]
    if not shared then
        error("no such lua_shared_dict: " .. HEALTH_DICT)
    end
    factor = settings.boundedLoad
    retries = settings.retries
    local edges, region_list = {}, {}
    for _, region in ipairs(settings.regions) do
        local nodes = {}
        for _, e in ipairs(region.edges) do
            local node = { id = e.id, region = region.name, host = e.host,
                           port = e.port, health = e.health,
                           k_load = "load:" .. e.id }
            nodes[#nodes + 1] = node
            edges[#edges + 1] = node
        end
        region_list[#region_list + 1] = { name = region.name, nodes = nodes }
        if #nodes > 0 then
            local r = ring_lib.new(nodes)
            r.usable, r.loads = {}, {}
            rings[region.name] = r
        end
    end
    for _, name in ipairs(settings.order) do
        all_rings[#all_rings + 1] = rings[name]
    end
    for _, first in ipairs(settings.order) do
        local list = { rings[first] }
        for _, other in ipairs(settings.order) do
            if other ~= first then
                list[#list + 1] = rings[other]
            end
        end
        fallback[first] = list
    end
    local err
    checker, err = health_lib.new(HEALTH_DICT, edges, settings.health)
    if not checker then
        error("failed to create the health checker: " .. err)
    end
    front.init(settings)
    stats.init(edges, region_list, checker, shared)
    -- init_by_lua runs as nginx loads its configuration: what it reads here is
    -- what nginx loaded with ssl_certificate
    certificates.init(settings.tlsCertificates)
end


function _M.init_worker()
    local ok, err = stats.init_worker()
    if not ok then
        log(WARN, "balancer: statistics disabled: ", err)
    end
    ok, err = checker:start()
    if not ok then
        log(ERR, "balancer: ", err)
    end
end


-- set_by_lua in the server's rewrite phase (no coroutine, unlike access_by_lua:
-- measurably cheaper per request): returns "" to go on, or the status nginx.conf
-- answers with ("400", "421"), which also closes the connection on a 400.
function _M.route()
    local status = front.check()
    if status then
        return status
    end
    local object = key.object(var.http_host, var.request_uri)
    if not object then
        return "400"
    end
    local ctx = ngx.ctx
    ctx.object = object
    ctx.rings = fallback[front.region()]
    ctx.idempotent = IDEMPOTENT[var.request_method]
    return ""
end


-- The first usable edge: in the request's region, then the next regions.
local function choose(ctx)
    local tried = ctx.tried
    for _, r in ipairs(ctx.rings) do
        local nodes, usable, loads = r.nodes, r.usable, r.loads
        for i = 1, #nodes do
            local node = nodes[i]
            usable[i] = not (tried and tried[node]) and checker:is_up(node)
            local load = shared:get(node.k_load) or 0
            loads[i] = load > 0 and load or 0
        end
        local node = r:pick_bounded(ctx.object, usable, loads, factor)
        if node then
            return node
        end
    end
    -- every edge is down or tried: an untried edge the checks gave up on beats
    -- failing outright (it may be back before the checks notice)
    for _, r in ipairs(ctx.rings) do
        local node = r:pick(ctx.object, function(n) return not (tried and tried[n]) end)
        if node then
            return node
        end
    end
    return nil
end


function _M.balance()
    local ctx = ngx.ctx
    local last = ctx.node
    if last then
        -- a retry: the previous edge failed ("failed" is a connection error or
        -- timeout; "next" an HTTP status proxy_next_upstream retries on, which
        -- says nothing about the edge's own health)
        local state, code = get_last_failure()
        if state == "failed" then
            checker:failure(last, "proxy: " .. tostring(code))
            stats.upstream_failure(last)
        end
        shared:incr(last.k_load, -1, 0)
        local tried = ctx.tried
        if not tried then
            tried = {}
            ctx.tried = tried
        end
        tried[last] = true
    elseif ctx.idempotent and retries > 0 then
        local ok, err = set_more_tries(retries)
        if not ok then
            log(WARN, "balancer: failed to set retries: ", err)
        end
    end
    local node = choose(ctx)
    if not node then
        ctx.node = nil
        log(ERR, "balancer: no edge left to try")
        return ngx_exit(502)
    end
    shared:incr(node.k_load, 1, 0)
    ctx.node = node
    local ok, err = set_current_peer(node.host, node.port)
    if not ok then
        log(ERR, "balancer: failed to set peer ", node.id, ": ", err)
        return ngx_exit(502)
    end
end


function _M.log()
    local node = ngx.ctx.node
    if node then
        shared:incr(node.k_load, -1, 0)
    end
    local status = ngx.status
    if status == 0 then
        status = tonumber(var.status) or 0 -- e.g. 499: nothing was sent
    end
    stats.record(node, status, tonumber(var.bytes_sent) or 0,
                 now() - start_time(), var.upstream_http_cache_status)
end


function _M.serve_metrics()
    local ok = stats.serve_metrics()
    if not ok then
        return ngx_exit(503)
    end
    ngx_print(certificates.render_metrics())
end


function _M.serve_health()
    header["Content-Type"] = "application/json"
    say('{"status":"ok","revision":"', revision, '"}')
end


local function status_extra()
    return { revision = revision, order = settings.order,
             bounded_load = factor, health_settings = settings.health }
end


function _M.serve_status_json()
    header["Content-Type"] = "application/json"
    header["Cache-Control"] = "no-store"
    ngx_print(stats.document_json(status_extra()))
end


function _M.serve_status()
    header["Content-Type"] = "text/html; charset=utf-8"
    header["Cache-Control"] = "no-store"
    -- everything is inline: no other origin, no other request than the JSON
    header["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'; "
        .. "script-src 'unsafe-inline'; connect-src 'self'; img-src data:"
    ngx_print(status_page.render(stats.document_json(status_extra())))
end


return _M
