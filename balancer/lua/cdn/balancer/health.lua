-- Edge health, shared by every worker through a lua_shared_dict. Worker 0 GETs
-- each edge's internal /healthz every `interval` seconds (all edges at once, one
-- light thread each); `fall` consecutive failures, counting both failed checks
-- and connections the proxy could not make (passive), take an edge out of
-- rotation, and `rise` consecutive good checks bring it back. A dead edge is out
-- within interval x fall (+ timeout when it hangs instead of refusing), sooner
-- while traffic flows, because the proxy's own failed connections count too.
local tcp = ngx.socket.tcp
local spawn = ngx.thread.spawn
local wait = ngx.thread.wait
local new_timer = ngx.timer.at
local now = ngx.now
local update_time = ngx.update_time
local worker_id = ngx.worker.id
local log = ngx.log
local ERR = ngx.ERR
local WARN = ngx.WARN
local error = error
local pcall = pcall
local type = type
local ipairs = ipairs
local tonumber = tonumber
local tostring = tostring
local setmetatable = setmetatable
local sub = string.sub

local _M = { _VERSION = "0.1.0" }
local mt = { __index = _M }

local USER_AGENT = "cdn-balancer-health/" .. _M._VERSION
local MIN_DELAY = 0.05


local function errlog(...)
    log(ERR, "balancer health: ", ...)
end


local function warnlog(...)
    log(WARN, "balancer health: ", ...)
end


-- nodes: array of { id, health = { host, port } }; opts: interval, timeout,
-- fall, rise (seconds and counts, as in the spec's balancer.health).
function _M.new(dict_name, nodes, opts)
    local dict = ngx.shared[dict_name]
    if not dict then
        return nil, "no such lua_shared_dict: " .. tostring(dict_name)
    end
    if type(nodes) ~= "table" then
        error("bad argument #2 nodes: table expected", 2)
    end
    for _, k in ipairs({ "interval", "timeout", "fall", "rise" }) do
        if type(opts[k]) ~= "number" or opts[k] <= 0 then
            error("opts." .. k .. " must be a positive number", 2)
        end
    end
    for _, node in ipairs(nodes) do
        local id = node.id
        node.k_down = "down:" .. id
        node.k_ko = "ko:" .. id
        node.k_ok = "ok:" .. id
        node.k_since = "since:" .. id
        node.k_last = "last:" .. id
        node.k_rtt = "rtt:" .. id
        node.k_checked = "checked:" .. id
    end
    return setmetatable({ dict = dict, nodes = nodes, interval = opts.interval,
                          timeout = opts.timeout, fall = opts.fall,
                          rise = opts.rise }, mt)
end


-- Hot path: one dict read. An edge nobody has judged yet is in rotation.
function _M:is_up(node)
    return not self.dict:get(node.k_down)
end


-- One failure, from a check or from the proxy (passive). Safe in any phase
-- that may touch shared dicts, from any worker.
function _M:failure(node, why)
    local dict = self.dict
    dict:set(node.k_ok, 0)
    local ko = dict:incr(node.k_ko, 1, 0)
    if ko and ko >= self.fall and dict:add(node.k_down, true) then
        dict:set(node.k_since, now())
        warnlog("edge ", node.id, " is down after ", ko, " failures; last: ", why)
    end
end


function _M:success(node)
    local dict = self.dict
    dict:set(node.k_ko, 0)
    if dict:get(node.k_down) then
        local ok = dict:incr(node.k_ok, 1, 0)
        if ok and ok >= self.rise then
            dict:delete(node.k_down)
            dict:set(node.k_ok, 0)
            dict:set(node.k_since, now())
            warnlog("edge ", node.id, " is back after ", ok, " good checks")
        end
    end
end


-- Whether the fleet is ready to serve: every edge has been checked, its last
-- check passed, and it is in rotation (an edge nobody has judged yet is in
-- rotation, but not ready). False without edges.
function _M:all_ready()
    local dict = self.dict
    local nodes = self.nodes
    if #nodes == 0 then
        return false
    end
    for _, node in ipairs(nodes) do
        if dict:get(node.k_down) or dict:get(node.k_last) ~= "ok" then
            return false
        end
    end
    return true
end


-- What the status page shows about one edge.
function _M:state(node)
    local dict = self.dict
    return {
        up = not dict:get(node.k_down),
        since = dict:get(node.k_since),
        last_check = dict:get(node.k_last),
        checked_at = dict:get(node.k_checked),
        check_ms = (dict:get(node.k_rtt) or 0) * 1000,
        failures = dict:get(node.k_ko) or 0,
    }
end


-- GET /healthz over HTTP/1.0; true when the status line says 200.
local function probe(node, timeout_ms)
    local sock = tcp()
    sock:settimeouts(timeout_ms, timeout_ms, timeout_ms)
    local target = node.health
    local ok, err = sock:connect(target.host, target.port)
    if not ok then
        return nil, "failed to connect: " .. tostring(err)
    end
    local sent
    sent, err = sock:send("GET /healthz HTTP/1.0\r\nHost: " .. target.host
                          .. "\r\nUser-Agent: " .. USER_AGENT .. "\r\n\r\n")
    if not sent then
        sock:close()
        return nil, "failed to send: " .. tostring(err)
    end
    local line
    line, err = sock:receive("*l")
    sock:close()
    if not line then
        return nil, "failed to read the status line: " .. tostring(err)
    end
    if tonumber(sub(line, 10, 12)) ~= 200 then
        return nil, "unhealthy: " .. line
    end
    return true
end


local function check_node(self, node)
    update_time()
    local started = now()
    local ok, err = probe(node, self.timeout * 1000)
    update_time()
    local dict = self.dict
    dict:set(node.k_rtt, now() - started)
    dict:set(node.k_checked, now())
    if ok then
        dict:set(node.k_last, "ok")
        self:success(node)
    else
        dict:set(node.k_last, err)
        self:failure(node, "check: " .. err)
    end
end


local function check_all(self)
    local threads = {}
    for i, node in ipairs(self.nodes) do
        local th, err = spawn(check_node, self, node)
        if not th then
            errlog("failed to spawn a check of ", node.id, ": ", err)
        end
        threads[i] = th
    end
    for _, th in ipairs(threads) do
        if th then
            local ok, err = wait(th)
            if not ok then
                errlog("failed to check an edge: ", err)
            end
        end
    end
end


local run

-- Reschedules itself so that checks start every `interval` seconds (a slow
-- round shortens the pause after it rather than piling rounds up).
run = function(premature, self)
    if premature then
        return
    end
    update_time()
    local started = now()
    local ok, err = pcall(check_all, self)
    if not ok then
        errlog("failed to run the checks: ", err)
    end
    update_time()
    local delay = self.interval - (now() - started)
    if delay < MIN_DELAY then
        delay = MIN_DELAY
    end
    local tok, terr = new_timer(delay, run, self)
    if not tok and terr ~= "process exiting" then
        errlog("failed to schedule the next checks: ", terr)
    end
end


-- Call from init_worker: worker 0 runs the checks (after a reload, the new
-- worker 0 takes over; the old one sees `premature` and stops).
function _M:start()
    if worker_id() ~= 0 or #self.nodes == 0 then
        return true
    end
    local ok, err = new_timer(0, run, self)
    if not ok then
        return nil, "failed to start the health checks: " .. tostring(err)
    end
    return true
end


return _M
