-- Per-request counters for the edge, kept in plain Lua tables of each worker and
-- moved into the shared metrics zone once a second. A shared-dict increment on
-- every hit cost more than everything else the edge does in Lua; a table
-- increment costs next to nothing.
local pairs = pairs
local floor = math.floor
local timer_every = ngx.timer.every
local log = ngx.log
local ERR = ngx.ERR

local _M = { _VERSION = "0.1.0" }

local FLUSH_INTERVAL = 1

local requests = {}  -- requests[cache_status][status] = n
local bytes = {}     -- bytes[cache_status] = n
local collapsed = 0
local metrics


function _M.count_bytes(cache_status, nbytes)
    bytes[cache_status] = (bytes[cache_status] or 0) + nbytes
end


-- One response; `nbytes` (its body bytes) may be left to count_bytes.
function _M.count(cache_status, status, nbytes)
    local by_status = requests[cache_status]
    if not by_status then
        by_status = {}
        requests[cache_status] = by_status
    end
    by_status[status] = (by_status[status] or 0) + 1
    if nbytes then
        bytes[cache_status] = (bytes[cache_status] or 0) + nbytes
    end
end


-- A request answered with another request's fetch (it waited on the cache lock).
function _M.count_collapsed()
    collapsed = collapsed + 1
end


function _M.flush()
    if not metrics then
        return
    end
    local r, b, c = requests, bytes, collapsed
    requests, bytes, collapsed = {}, {}, 0
    if c > 0 then
        metrics:inc("cdn_edge_collapsed_total", c)
    end
    for cache_status, by_status in pairs(r) do
        for status, n in pairs(by_status) do
            metrics:inc("cdn_edge_requests_total", n,
                        { cache_status, floor(status / 100) .. "xx" })
        end
    end
    for cache_status, n in pairs(b) do
        metrics:inc("cdn_edge_response_bytes_total", n, { cache_status })
    end
end


function _M.start(m)
    metrics = m
    -- also runs (premature) when the worker exits, so little is lost on reload
    local ok, err = timer_every(FLUSH_INTERVAL, function()
        _M.flush()
    end)
    if not ok then
        log(ERR, "stats: failed to start the flush timer: ", err)
    end
end


return _M
