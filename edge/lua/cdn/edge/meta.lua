-- The X-Cdn-Meta record, its one definition: the internal hop (fetch.lua)
-- writes it into every response it passes to the cache (and records a 304's in
-- revalidated.lua); the public header filter (edge.lua) parses it, once per
-- distinct value.
--
-- It carries what the public server needs on every response, so the hit path
-- reads one upstream header instead of several (each read scans the stored
-- headers):
--   "<born> <expires> <stored><cs> <size>@<fetched>|<cache-control>"
-- born: epoch second the response was generated (receipt minus initial age);
-- expires: epoch second it stops being fresh (ten digits each until 2286);
-- stored: "s" or "n"; cs: "c" when the upstream sent its own Cache-Status;
-- size: Content-Length or "-"; fetched: when this edge received it (epoch
-- seconds, in ms; responses stored before it was added lack "@<fetched>");
-- then the origin's Cache-Control for browsers (after "|", since nginx trims a
-- trailing space off an empty one).
local tonumber = tonumber
local type = type
local sub = string.sub
local find = string.find
local byte = string.byte
local format = string.format
local concat = table.concat

local _M = { _VERSION = "0.1.0" }

-- Epoch seconds for X-Cdn-Meta: ten digits whatever the origin claims.
local MAX_META_TIME = 9999999999


local function clamp(n)
    return n < 0 and 0 or (n > MAX_META_TIME and MAX_META_TIME or n)
end


-- The record; born and expires are clamped to ten digits, cc may be a list.
function _M.value(born, expires, stored, upstream_cs, size, fetched, cc)
    if type(cc) == "table" then
        cc = concat(cc, ", ")
    end
    -- zero-padded: fields() reads both at fixed offsets
    return format("%010d %010d ", clamp(born), clamp(expires)) .. (stored and "s" or "n")
           .. (upstream_cs and "c" or "-") .. " " .. (size or "-")
           .. format("@%.3f|", fetched) .. (cc or "")
end


-- Splits X-Cdn-Meta: born, expires, stored, upstream_cs, size, cache_control,
-- fetched (nil in responses stored without it).
function _M.fields(meta)
    local bar = find(meta, "|", 26, true)
    if not bar then
        return nil
    end
    local at = find(meta, "@", 26, true)
    if at and at > bar then
        at = nil
    end
    return tonumber(sub(meta, 1, 10)), tonumber(sub(meta, 12, 21)),
           byte(meta, 23) == 115, -- "s"
           byte(meta, 24) == 99,  -- "c"
           tonumber(sub(meta, 26, (at or bar) - 1)), sub(meta, bar + 1),
           at and tonumber(sub(meta, at + 1, bar - 1))
end


return _M
