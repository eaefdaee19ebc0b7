-- Requests in progress per edge.
--
-- Each worker counts its own in plain Lua tables: the request path runs in
-- LuaJIT's interpreter, where a shared-dict increment on every pick and a
-- decrement on every response cost more than the ring pick itself. Bounded
-- loads compare a worker's own counts: each worker sees about 1/w of the
-- traffic, and the bound is relative (c x the mean), so a hot object still
-- spills over. For the status page and /metrics every worker publishes its
-- counts to the shared dict a few times a second (with an expiry, so a worker
-- that is gone stops counting) and readers add them up.
local worker_id = ngx.worker.id
local worker_count = ngx.worker.count

local _M = { _VERSION = "0.1.0" }

-- published counts outlive a few missed publications, not a dead worker
local PUBLISHED_TTL = 5

local counts = {}    -- node -> requests in flight from this worker


function _M.init(nodes)
    for _, node in ipairs(nodes) do
        counts[node] = 0
    end
end


function _M.started(node)
    counts[node] = counts[node] + 1
end


function _M.finished(node)
    local n = counts[node] - 1
    counts[node] = n > 0 and n or 0
end


-- This worker's count, for the bounded-load pick.
function _M.of(node)
    return counts[node]
end


local function published_key(node, worker)
    return node.k_load .. ":" .. worker
end


function _M.publish(dict, nodes)
    local me = worker_id()
    for _, node in ipairs(nodes) do
        dict:set(published_key(node, me), counts[node], PUBLISHED_TTL)
    end
end


-- Every worker's count as last published.
function _M.total(dict, node)
    local n = 0
    for w = 0, worker_count() - 1 do
        n = n + (dict:get(published_key(node, w)) or 0)
    end
    return n
end


return _M
