-- Consistent hashing ring (Karger et al.): each edge owns many virtual points on a
-- 32-bit circle; a key belongs to the first point clockwise from its hash. Adding
-- or removing one of N edges moves only about 1/N of the keys, so each object
-- lives on one edge of a region and the fleet's caches add up instead of repeating.
local crc32 = ngx.crc32_long
local sort = table.sort
local floor = math.floor
local ceil = math.ceil
local error = error
local type = type
local ipairs = ipairs
local setmetatable = setmetatable

local _M = { _VERSION = "0.1.0" }
local mt = { __index = _M }

local DEFAULT_VNODES = 160


-- nodes: array of { id = "eu-1", ... }; returns a ring over them.
function _M.new(nodes, vnodes)
    if type(nodes) ~= "table" or #nodes == 0 then
        error("bad argument #1 nodes: non-empty array expected", 2)
    end
    vnodes = vnodes or DEFAULT_VNODES
    local points = {}
    for i, node in ipairs(nodes) do
        for v = 1, vnodes do
            points[#points + 1] = { crc32(node.id .. "#" .. v), i }
        end
    end
    sort(points, function(a, b)
        if a[1] == b[1] then
            return a[2] < b[2]
        end
        return a[1] < b[1]
    end)
    local hashes, owners = {}, {}
    for i, p in ipairs(points) do
        hashes[i] = p[1]
        owners[i] = p[2]
    end
    -- seen[] marks nodes met during one walk with the walk's number, so a walk
    -- allocates nothing (balancer_by_lua never yields, so walks never overlap).
    return setmetatable({ nodes = nodes, hashes = hashes, owners = owners,
                          seen = {}, walk = 0 }, mt)
end


-- Index of the first point whose hash is >= h (wrapping to 1).
local function first_point(hashes, h)
    local lo, hi = 1, #hashes
    if h > hashes[hi] then
        return 1
    end
    while lo < hi do
        local mid = floor((lo + hi) / 2)
        if hashes[mid] < h then
            lo = mid + 1
        else
            hi = mid
        end
    end
    return lo
end


-- Walks the ring clockwise from `key` and returns the first node for which
-- `usable(node)` is true (all nodes when usable is nil), or nil.
function _M:pick(key, usable)
    local hashes, owners, nodes = self.hashes, self.owners, self.nodes
    local n = #hashes
    local start = first_point(hashes, crc32(key))
    local seen, seen_count = {}, 0
    for step = 0, n - 1 do
        local idx = owners[(start + step - 1) % n + 1]
        if not seen[idx] then
            seen[idx] = true
            seen_count = seen_count + 1
            local node = nodes[idx]
            if not usable or usable(node) then
                return node
            end
            if seen_count == #nodes then
                return nil
            end
        end
    end
    return nil
end


-- Consistent hashing with bounded loads (Mirrokni, Thorup, Zadimoghaddam,
-- SODA 2018): walking clockwise from the key, the first usable node whose load
-- is below ceil(factor * (total + 1) / usable nodes) takes the request. A hot
-- key therefore spills to the next node clockwise instead of piling onto its
-- owner, while a cold key stays on its owner. With factor >= 1 some usable node
-- is always below the bound, so only "no usable node" returns nil. `floor`
-- (optional) raises the bound to at least that many in-flight requests: below
-- it no edge counts as loaded, and a key stays on its owner.
-- usable[i] and loads[i] describe self.nodes[i]; returns the node and its index.
function _M:pick_bounded(key, usable, loads, factor, floor)
    return self:pick_bounded_at(self:start_of(key), usable, loads, factor, floor)
end


-- Where a key's walk starts on this ring, for pick_bounded_at: the balancer
-- works it out once per object and keeps it.
function _M:start_of(key)
    return first_point(self.hashes, crc32(key))
end


-- The first `n` distinct nodes clockwise from the ring point `start` (see
-- start_of): where routing puts the key (its owner) and where it goes when the
-- owner is loaded or down (the next ones), in that order.
function _M:nodes_at(start, n)
    local hashes, owners, nodes = self.hashes, self.owners, self.nodes
    local count = #hashes
    local found, taken = {}, {}
    if n > #nodes then
        n = #nodes
    end
    for step = 0, count - 1 do
        local idx = owners[(start + step - 1) % count + 1]
        if not taken[idx] then
            taken[idx] = true
            found[#found + 1] = nodes[idx]
            if #found == n then
                break
            end
        end
    end
    return found
end


-- pick_bounded for a walk starting at the ring point `start` (see start_of).
function _M:pick_bounded_at(start, usable, loads, factor, floor)
    local nodes = self.nodes
    local count, total = 0, 0
    for i = 1, #nodes do
        if usable[i] then
            count = count + 1
            total = total + loads[i]
        end
    end
    if count == 0 then
        return nil
    end
    local cap = ceil(factor * (total + 1) / count)
    if floor and cap < floor then
        cap = floor
    end
    local hashes, owners, seen = self.hashes, self.owners, self.seen
    local walk = self.walk + 1
    self.walk = walk
    local n = #hashes
    for step = 0, n - 1 do
        local idx = owners[(start + step - 1) % n + 1]
        if seen[idx] ~= walk then
            seen[idx] = walk
            if usable[idx] and loads[idx] < cap then
                return nodes[idx], idx
            end
        end
    end
    return nil
end


return _M
