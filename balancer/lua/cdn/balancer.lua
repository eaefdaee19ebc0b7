-- The balancer's phase handlers. nginx.conf calls exactly one function per phase;
-- each concern lives in its own module under cdn/balancer/:
--   front   front-door checks and the shopper's region
--   ring    consistent hashing with bounded loads
--   health  active and passive health checks, shared by workers
--   stats   traffic statistics for /status, /status.json and /metrics
--   certificates  expiry of the TLS certificates served, for /metrics
--   writes  invalidation of what a write's Location / Content-Location name,
--           on the edges that may hold it (RFC 9111 §4.4)
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
local inflight = require "cdn.balancer.inflight"
local memo = require "cdn.memo"
local certificates = require "cdn.balancer.certificates"
local writes = require "cdn.balancer.writes"
local ngx_balancer = require "ngx.balancer"
local get_request = require("resty.core.base").get_request
local ffi = require "ffi"

local var = ngx.var
local header = ngx.header
local ngx_exit = ngx.exit
local say = ngx.say
local get_method = ngx.req.get_method
local ngx_print = ngx.print
local log = ngx.log
local ERR = ngx.ERR
local WARN = ngx.WARN
local ipairs = ipairs
local tostring = tostring
local tonumber = tonumber
local pcall = pcall
local error = error
local set_current_peer = ngx_balancer.set_current_peer
local get_last_failure = ngx_balancer.get_last_failure
local now = ngx.now
local timer_every = ngx.timer.every
local start_time = ngx.req.start_time
local memo_get, memo_set = memo.get, memo.set
local cast = ffi.cast
local uintptr_t = ffi.typeof("uintptr_t")
local match = string.match
local sub = string.sub
require "resty.core.misc"   -- declares the FFI function below
local response_status = ffi.C.ngx_http_lua_ffi_get_resp_status
local invalidates = writes.invalidates

local _M = { _VERSION = "0.2.0" }

local HEALTH_DICT = "cdn_health"

local settings
local revision
local rings = {}      -- region name -> ring over its edges
local fallback = {}   -- region name -> array of rings, that region first
local all_rings = {}  -- rings in the configured order
local checker
local shared          -- the health dict; also holds in-flight counts
local factor
-- in-flight requests an edge always takes before the bound applies (spec boundedLoadFloor)
local floor
local edges           -- every edge

-- The request path reads one nginx variable per phase and looks the rest up in
-- per-worker memos (each ngx.var read, shared-dict access or ngx.ctx use costs
-- several hundred instructions in LuaJIT's interpreter, which is where request
-- handlers run).
-- $cdn_route -> { refuse = status } or { object, rings, starts }; the key holds
-- what routing depends on (routeSignature in balancer/render.ts): the region
-- sources the spec configures, then "<host>\n<Host>\n<URI>".
local routes
local ROUTE_CACHE_SIZE = 20000
-- Longer signatures are routed every time (the memo counts entries, not bytes).
local ROUTE_CACHE_MAX = 512
-- $cdn_log -> what the log phase records (see log_entry)
local logs
local LOG_CACHE_SIZE = 5000

-- Health as this worker last read it from the shared dict: every
-- HEALTH_VIEW_INTERVAL seconds from a timer, and right after this worker saw an
-- edge fail, not on the request path. Another worker's verdict reaches this
-- one within the interval; until then a request sent to a dead edge is retried
-- on the next one, as any request racing a failure is.
local down = {}
local HEALTH_VIEW_INTERVAL = 0.05


local function refresh_health()
    for i = 1, #edges do
        local node = edges[i]
        down[node] = not checker:is_up(node)
    end
end


local function refresh_health_timer(premature)
    if premature then
        return
    end
    local ok, err = pcall(refresh_health)
    if not ok then
        log(ERR, "balancer: failed to refresh the health view: ", err)
    end
end


function _M.init(settings_path)
    settings = settings_loader.load(settings_path)
    revision = settings.revision
    shared = ngx.shared[HEALTH_DICT]
    if not shared then
        error("no such lua_shared_dict: " .. HEALTH_DICT)
    end
    factor = settings.boundedLoad
    floor = settings.boundedLoadFloor
    local region_list = {}
    edges = {}
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
    inflight.init(edges)
    stats.init(edges, region_list, checker, shared, settings.latencyBuckets)
    -- init_by_lua runs as nginx loads its configuration: what it reads here is
    -- what nginx loaded with ssl_certificate
    certificates.init(settings.tlsCertificates)
end


function _M.init_worker()
    routes = memo.new(ROUTE_CACHE_SIZE)
    logs = memo.new(LOG_CACHE_SIZE)
    front.init_worker()
    refresh_health()
    local ok, err = timer_every(HEALTH_VIEW_INTERVAL, refresh_health_timer)
    if not ok then
        -- without it a dead edge would still be tried first, then skipped by retries
        log(ERR, "balancer: failed to start the health view: ", err)
    end
    writes.init_worker(edges, down)
    ok, err = stats.init_worker()
    if not ok then
        log(WARN, "balancer: statistics disabled: ", err)
    end
    ok, err = checker:start()
    if not ok then
        log(ERR, "balancer: ", err)
    end
end


-- Where a request signature goes: refused by the front door, or an object key
-- (and where its walk starts on each ring) with the rings to try, its region's first.
local function entry_of(object, rings)
    local starts = {}
    for k = 1, #rings do
        starts[k] = rings[k]:start_of(object)
    end
    return { object = object, rings = rings, starts = starts }
end


local function route_entry()
    local status = front.host_refusal()
    if status then
        return { refuse = status }
    end
    local object = key.object(var.http_host, var.request_uri)
    if not object then
        return { refuse = "400" }
    end
    return entry_of(object, fallback[front.region()])
end


local function route_of(route)
    local entry = memo_get(routes, route)
    if not entry then
        entry = route_entry()
        if #route <= ROUTE_CACHE_MAX then
            memo_set(routes, route, entry)
        end
    end
    return entry
end


-- The route of the current request. (Its own function: an ngx.var read stops
-- LuaJIT from compiling the function it is in, and the phase handlers around
-- it are worth compiling.)
local function request_route()
    return route_of(var.cdn_route)
end


-- State handed from one phase of a request to the next without ngx.var or
-- ngx.ctx (each costs hundreds of instructions), keyed by the request's address:
-- the last request route() saw and its route (balance() usually runs right
-- after, in the same event, for a request without a body), and the edges
-- balance() picked for each request until its log phase. route() runs first for
-- every request, so an address reused by a later request starts afresh.
local routed_request, routed_entry
local picks = {}   -- request -> the edge picked, or a list of them after a retry


-- The current request's address as a number: a table key (each cdata pointer
-- object would be a key of its own).
local function request_id()
    return tonumber(cast(uintptr_t, get_request()))
end


-- set_by_lua in the server's rewrite phase (no coroutine, unlike access_by_lua:
-- measurably cheaper per request): returns "" to go on, or the status nginx.conf
-- answers with ("400", "421"), which also closes the connection on a 400.
function _M.route()
    if front.bad_bytes() then
        return "400"
    end
    local r, entry = request_id(), request_route()
    routed_request, routed_entry = r, entry
    picks[r] = nil
    return entry.refuse or ""
end


-- set_by_lua of the internal listener's /warm/ location (the origin's cache
-- warming, POST /v1/warm): the object after "/warm" goes where a shopper's
-- request for it in the region X-Cdn-Warm-Region names would, its home edge
-- there. Returns "" to go on, or "400" (unknown region, refused target).
function _M.route_warm()
    local rings = fallback[var.http_x_cdn_warm_region or ""]
    local target = sub(var.request_uri, 6) -- after "/warm"
    local object = rings and key.object(var.http_host, target)
    if not object then
        return "400"
    end
    local r = request_id()
    routed_request, routed_entry = r, entry_of(object, rings)
    picks[r] = nil
    return ""
end


-- Every edge is down or tried: an untried edge the checks gave up on beats
-- failing outright (it may be back before the checks notice). (Its own function:
-- the closure made LuaJIT abort traces through choose(): NYI UCLO.)
local function any_untried(entry, tried)
    local rings = entry.rings
    for k = 1, #rings do
        local node = rings[k]:pick(entry.object, function(n) return not (tried and tried[n]) end)
        if node then
            return node
        end
    end
    return nil
end


-- The first usable edge: in the request's region, then the next regions.
-- tried: edges this request already failed on (a retry), or nil.
local function choose(entry, tried)
    local rings = entry.rings
    for k = 1, #rings do
        local r = rings[k]
        local nodes, usable, loads = r.nodes, r.usable, r.loads
        for i = 1, #nodes do
            local node = nodes[i]
            usable[i] = not down[node] and not (tried and tried[node])
            loads[i] = inflight.of(node)
        end
        local node = r:pick_bounded_at(entry.starts[k], usable, loads, factor, floor)
        if node then
            return node
        end
    end
    return any_untried(entry, tried)
end


-- The edges balance() picked for a request, in order: they, not $upstream_addr,
-- say which in-flight counts to give back (nginx lists an edge in
-- $upstream_addr only once a connection was set up, and an attempt can fail
-- before that: no free connection slot).
local function attempted(picked)
    if not picked then
        return {}
    end
    return picked.id and { picked } or picked
end


local function pick(r, node, before)
    if not before then
        picks[r] = node
    elseif before.id then
        picks[r] = { before, node }
    else
        before[#before + 1] = node
    end
end


-- Retries: the upstream block lists one placeholder server per allowed try,
-- which is how nginx counts tries (no set_more_tries call per request); which
-- methods may be tried again is nginx.conf's limit_except (balancer/render.ts).
function _M.balance()
    local r = request_id()
    local tried, picked
    local state, code = get_last_failure()
    if state then
        -- a retry: the previous edge failed ("failed" is a connection error or
        -- timeout; "next" an HTTP status proxy_next_upstream retries on, which
        -- says nothing about the edge's own health)
        picked = picks[r]
        local before = attempted(picked)
        tried = {}
        for i = 1, #before do
            tried[before[i]] = true
        end
        local last = before[#before]
        if state == "failed" and last then
            checker:failure(last, "proxy: " .. tostring(code))
            stats.upstream_failure(last)
            refresh_health()
        end
    end
    local node = choose(r == routed_request and routed_entry or request_route(), tried)
    if not node then
        log(ERR, "balancer: no edge left to try")
        return ngx_exit(502)
    end
    local ok, err = set_current_peer(node.host, node.port)
    if not ok then
        log(ERR, "balancer: failed to set peer ", node.id, ": ", err)
        return ngx_exit(502)
    end
    pick(r, node, picked)
    inflight.started(node)
end


-- $cdn_log split: bytes sent, and the result the last edge reported in
-- Cache-Status. (The status is read from the request through FFI, cheaper than
-- formatting $status; the duration is measured on its own: it differs from one
-- request to the next, and this is memoised.)
local function log_entry(line)
    local bytes, cache = match(line, "^(%d+)\n(.*)$")
    return { bytes = tonumber(bytes) or 0,
             result = stats.cache_result(cache ~= "" and cache or nil) }
end


-- (its own function: an ngx.var read stops LuaJIT from compiling the function
-- it is in)
local function request_log()
    local line = var.cdn_log
    local entry = memo_get(logs, line)
    if not entry then
        entry = log_entry(line)
        memo_set(logs, line, entry)
    end
    return entry
end


-- Gives back the in-flight counts of the edges a request was sent to; returns
-- the last one.
local function finished(r)
    local picked = picks[r]
    local node = picked
    if picked then
        picks[r] = nil
        if picked.id then
            inflight.finished(picked)
        else
            for i = 1, #picked do
                inflight.finished(picked[i])
            end
            node = picked[#picked]
        end
    end
    return node
end


-- A successful unsafe request an edge answered: what its Location and
-- Content-Location name is invalidated on the edges that may hold it (writes.lua).
-- (Its own function: ngx.var reads.)
local function after_write()
    writes.written(var.http_host, var.request_uri, header["Location"],
                   header["Content-Location"], request_route().rings)
end


function _M.log()
    local r = request_id()
    local node = finished(r)
    local entry = request_log()
    local status = response_status(get_request())
    stats.record(node, status, entry.bytes, now() - start_time(), entry.result)
    -- (for the requests an edge answered, one method test: all a GET pays)
    if node and invalidates(get_method(), status) then
        after_write()
    end
end


-- Log phase of the warming location: the edge's in-flight count back, and no
-- statistics (warming is not shoppers' traffic).
function _M.log_warm()
    finished(request_id())
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


-- GET /.well-known/cdn-ready on the public listener (deployments poll it, see
-- infra/targets/aws/readiness.ts): 200 when every edge has passed its health
-- check and is in rotation, 503 otherwise. It says nothing else: no edge, no
-- count, no revision; /status.json stays on the internal listener.
function _M.serve_ready()
    header["Cache-Control"] = "no-store"
    local method = get_method()
    if method ~= "GET" and method ~= "HEAD" then
        header["Allow"] = "GET, HEAD"
        return ngx_exit(405)
    end
    header["Content-Type"] = "text/plain"
    if checker:all_ready() then
        say("ready")
    else
        ngx.status = 503
        say("not ready")
    end
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
