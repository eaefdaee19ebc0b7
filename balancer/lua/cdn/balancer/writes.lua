-- Invalidation by writes across the fleet (RFC 9111 §4.4). The edge that answers
-- a successful unsafe request invalidates what it wrote in its own cache
-- (edge/lua/cdn/edge/writes.lua): the request's URL, whose GETs the ring sends
-- to that same edge, and the same-host paths its Location and Content-Location
-- name, whose GETs the ring usually sends elsewhere. So the balancer tells, for
-- each of those other paths, every edge that may hold a copy: in every region,
-- the path's home edge and the next one on the ring (where bounded-load spill
-- and failover send its GETs), over their internal listener:
--   POST /invalidate?path=<key path>[&path=...]   (edge/lua/cdn/edge/internal.lua)
-- From a timer the log phase starts (no I/O in the phases before), so it
-- normally lands before the client's next request, but nothing waits for it.
-- A failure is logged at warn with the edge's id and counted
-- (cdn_balancer_invalidation_failures_total, stats.lua); the copy then lives
-- until it expires or the origin purges it.
local key = require "cdn.key"
local stats = require "cdn.balancer.stats"

local tcp = ngx.socket.tcp
local new_timer = ngx.timer.at
local spawn = ngx.thread.spawn
local wait = ngx.thread.wait
local escape_uri = ngx.escape_uri
local log = ngx.log
local WARN = ngx.WARN
local match = string.match
local lower = string.lower
local concat = table.concat
local type = type
local tostring = tostring
local tonumber = tonumber
local pcall = pcall

local _M = { _VERSION = "0.1.0" }

-- RFC 9111 §4.4: the success of any method not known to be safe invalidates
-- (the edge's list too: cdn.key).
local SAFE_METHODS = key.SAFE_METHODS

-- Edges per ring told: the owner, and the next one routing would use.
local CANDIDATES = 2
-- Milliseconds for each of connect, send and read on the internal listener.
local TIMEOUT_MS = 1000
-- Idle connections kept per edge and worker, and for how long: less than the
-- edge's keepalive_timeout (nginx's 75 s), so the edge never closes one first
-- while idle.
local KEEPALIVE_POOL = 8
local KEEPALIVE_MS = 60000
local USER_AGENT = "cdn-balancer-writes/" .. _M._VERSION

-- Whether a request with this method and final status invalidates (log phase).
function _M.invalidates(method, status)
    return status >= 200 and status < 400 and not SAFE_METHODS[method]
end


-- The paths named by a header's value(s) (a table when it was sent more than once).
local function add_named(found, value, host, request_uri, own)
    if type(value) == "table" then
        for i = 1, #value do
            add_named(found, value[i], host, request_uri, own)
        end
        return
    end
    local path = key.location_path(value, host, request_uri)
    if path and path ~= own and not found[path] then
        found[path] = true
        found[#found + 1] = path
    end
end


-- The edges to tell, in the order told, and edge -> the paths to invalidate
-- there, for `paths` on `host`: on every ring, the owner of host .. path
-- (cdn.key's object, as routing hashes it) and the next edge. The client's
-- region comes first in `rings`, its owner first on its ring: the copy its next
-- request would get is invalidated first.
local is_down = {}   -- the balancer's health view: node -> true while out of rotation

local function targets(host, paths, rings)
    local by_edge, edges = {}, {}
    for k = 1, #rings do
        local ring = rings[k]
        for i = 1, #paths do
            local path = paths[i]
            local nodes = ring:nodes_at(ring:start_of(host .. path), CANDIDATES)
            for j = 1, #nodes do
                local node = nodes[j]
                local list = by_edge[node]
                -- (an edge out of rotation gets no GETs; telling it would only
                -- hold a timer for the connect timeout)
                if is_down[node] then
                    list = false
                elseif not list then
                    list = {}
                    by_edge[node] = list
                    edges[#edges + 1] = node
                end
                if list then
                    list[#list + 1] = path
                end
            end
        end
    end
    return edges, by_edge
end


-- Reads a response (its head only for a HEAD request); returns the status,
-- whether the connection can be reused and the body, or nil and an error.
local function read_response(sock, head_only)
    local line, err = sock:receive("*l")
    if not line then
        return nil, err
    end
    local status = tonumber(match(line, "^HTTP/1%.%d (%d%d%d)"))
    if not status then
        return nil, "bad status line: " .. line
    end
    local length, close = 0, false
    local chunked = false
    while true do
        line, err = sock:receive("*l")
        if not line then
            return nil, err
        end
        if line == "" then
            break
        end
        local name, value = match(line, "^([^:]+):%s*(.-)%s*$")
        if name then
            name = lower(name)
            if name == "content-length" then
                length = tonumber(value) or 0
            elseif name == "connection" and lower(value) == "close" then
                close = true
            elseif name == "transfer-encoding" then
                chunked = true -- (not read: such a connection is not reused)
            end
        end
    end
    if head_only then
        return status, not close, ""
    end
    if chunked then
        return status, false, ""
    end
    if length > 0 then
        local body
        body, err = sock:receive(length)
        if not body then
            return nil, err
        end
        return status, not close, body
    end
    return status, not close, ""
end


-- One attempt on a connection from this module's own pool (the health checker
-- closes the connections it takes: sharing its pool would leave none warm).
-- Returns true, or nil, an error and whether the connection had been used before.
local function attempt(node, request, expected, head_only)
    local target = node.health
    local sock = tcp()
    sock:settimeouts(TIMEOUT_MS, TIMEOUT_MS, TIMEOUT_MS)
    local ok, err = sock:connect(target.host, target.port, { pool = node.invalidate_pool })
    if not ok then
        return nil, "connect: " .. tostring(err), false
    end
    local reused = (sock:getreusedtimes() or 0) > 0
    local sent
    sent, err = sock:send(request)
    if not sent then
        sock:close()
        return nil, "send: " .. tostring(err), reused
    end
    local status, reusable, body = read_response(sock, head_only)
    if not status then
        sock:close()
        return nil, "read: " .. tostring(reusable), reused
    end
    if reusable then
        sock:setkeepalive(KEEPALIVE_MS, KEEPALIVE_POOL)
    else
        sock:close()
    end
    if status ~= expected then
        return nil, "status " .. status .. (body ~= "" and (": " .. body) or ""), false
    end
    return true
end


local function pool_of(node)
    local pool = node.invalidate_pool
    if not pool then
        pool = "cdn-invalidate:" .. node.health.host .. ":" .. node.health.port
        node.invalidate_pool = pool
    end
    return pool
end


local function invalidate_on(node, paths)
    local args = {}
    for i = 1, #paths do
        args[i] = "path=" .. escape_uri(paths[i])
    end
    pool_of(node)
    local request = "POST /invalidate?" .. concat(args, "&") .. " HTTP/1.1\r\nHost: "
        .. node.health.host .. "\r\nUser-Agent: " .. USER_AGENT
        .. "\r\nContent-Length: 0\r\n\r\n"
    local ok, err, reused = attempt(node, request, 204)
    if not ok and reused then
        -- a kept-alive connection the edge closed meanwhile (idle, reload): once
        -- more on a new one (the invalidation is idempotent)
        ok, err = attempt(node, request, 204)
    end
    return ok, err
end


local function invalidate_edge(node, paths)
    local ok, done, err = pcall(invalidate_on, node, paths)
    if not ok or not done then
        log(WARN, "balancer: failed to invalidate ", concat(paths, " "), " on edge ",
            node.id, " after a write: ", tostring(ok and err or done))
        stats.invalidation_failure(node)
    end
end


-- Keeps a connection to every edge open in this worker's pool (HEAD /healthz
-- every WARM_INTERVAL s, within KEEPALIVE_MS): a write's invalidation then
-- leaves at once instead of after a TCP handshake, which a client next to the
-- balancer can outrun. Failures are the health checker's to report.
local WARM_INTERVAL = 20
local all_edges = {}

local function warm(premature)
    if premature then
        return
    end
    for i = 1, #all_edges do
        local node = all_edges[i]
        pool_of(node)
        spawn(attempt, node, "HEAD /healthz HTTP/1.1\r\nHost: " .. node.health.host
              .. "\r\nUser-Agent: " .. USER_AGENT .. "\r\n\r\n", 200, true)
    end
end


-- init_worker_by_lua: edges, every edge; down, the balancer's health view
-- (node -> true while out of rotation, kept up to date by balancer.lua).
function _M.init_worker(edges, down)
    all_edges = edges
    is_down = down or {}
    local ok, err = new_timer(0, warm)
    if ok then
        ok, err = ngx.timer.every(WARM_INTERVAL, warm)
    end
    if not ok then
        log(WARN, "balancer: invalidation connections are not kept warm: ", err)
    end
end


-- Invalidations in progress in this worker, and the most it starts at once: a
-- flood of writes must not take every timer (lua_max_running_timers) the
-- worker has. Beyond it they are dropped, logged and counted.
local running = 0
local MAX_RUNNING = 64

local function run_all(edges, by_edge)
    local threads = {}
    for i = 1, #edges do
        local node = edges[i]
        local thread, err = spawn(invalidate_edge, node, by_edge[node])
        if thread then
            threads[#threads + 1] = thread
        else
            log(WARN, "balancer: failed to invalidate on edge ", node.id, ": ", err)
            stats.invalidation_failure(node)
        end
    end
    for i = 1, #threads do
        wait(threads[i])
    end
end

local function run(premature, edges, by_edge)
    if not premature then
        local ok, err = pcall(run_all, edges, by_edge)
        if not ok then
            log(WARN, "balancer: invalidation after a write failed: ", err)
        end
    end
    running = running - 1
end


-- Log phase of a successful unsafe request answered by an edge: the same-host
-- paths its Location and Content-Location name, other than its own, are
-- invalidated on the edges that may hold them. raw_host and request_uri: the
-- client's Host and request target; rings: every region's, the client's first
-- (the request's route).
function _M.written(raw_host, request_uri, location, content_location, rings)
    if not location and not content_location then
        return
    end
    local host = key.host(raw_host)
    local own = key.purge_path(request_uri)
    local found = {}
    add_named(found, location, host, request_uri, own)
    add_named(found, content_location, host, request_uri, own)
    if #found == 0 then
        return
    end
    local edges, by_edge = targets(host, found, rings)
    if #edges == 0 then
        return
    end
    local ok, err = false, "too many in progress (" .. MAX_RUNNING .. ")"
    if running < MAX_RUNNING then
        running = running + 1
        ok, err = new_timer(0, run, edges, by_edge)
        if not ok then
            running = running - 1
        end
    end
    if not ok then
        for i = 1, #edges do
            log(WARN, "balancer: failed to invalidate ", concat(by_edge[edges[i]], " "),
                " on edge ", edges[i].id, " after a write: ", err)
            stats.invalidation_failure(edges[i])
        end
    end
end


return _M
