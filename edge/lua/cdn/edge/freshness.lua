-- Decides whether and for how long the edge may store a response (RFC 9111,
-- RFC 5861, RFC 9213). nginx reads freshness from the upstream's headers while it
-- receives them and gets several rules wrong (it ignores Age, refuses `no-cache`
-- outright, knows nothing of CDN-Cache-Control), so the edge fetches through an
-- internal hop whose header filter runs `decide` and tells nginx the answer in
-- X-Accel-Expires. Pure functions of their inputs, so they are tested directly.
local find = string.find
local byte = string.byte
local lower = string.lower
local match = string.match
local gmatch = string.gmatch
local tonumber = tonumber
local ipairs = ipairs
local type = type
local max = math.max
local concat = table.concat

local _M = { _VERSION = "0.1.0" }


-- RFC 9111 §3: a cache may store a response of any final status when its
-- freshness is explicit (the edge never guesses a heuristic lifetime). A 206
-- only as the answer to a slice request (its own entry); 5xx only when the spec
-- says so (cache.store5xx), since a stored error page outlives the outage.
local function storable_status(status, slice, store_5xx)
    if status == 206 then
        return slice
    end
    if status < 200 or status > 599 then
        return false
    end
    return status < 500 or store_5xx
end


-- Parses a Cache-Control-style list into { directive = value|true }. Directive
-- names are case-insensitive; quoted values lose their quotes. Returns nil for an
-- empty or missing field.
function _M.parse(value)
    if type(value) == "table" then
        local joined = {}
        for i = 1, #value do
            joined[i] = value[i]
        end
        value = concat(joined, ",")
    end
    if not value or value == "" then
        return nil
    end
    local d = {}
    for part in gmatch(value, "[^,]+") do
        local name, v = match(part, "^%s*([%w%-_]+)%s*=%s*\"?([^\"]*)\"?%s*$")
        if name then
            d[lower(name)] = v
        else
            name = match(part, "^%s*([%w%-_]+)%s*$")
            if name then
                d[lower(name)] = true
            end
        end
    end
    return d
end


-- The statuses RFC 9110 defines (for must-understand).
local UNDERSTOOD_STATUS = {}
for _, s in ipairs({ 200, 201, 202, 203, 204, 205, 206, 300, 301, 302, 303, 304,
                     305, 307, 308, 400, 401, 402, 403, 404, 405, 406, 407, 408,
                     409, 410, 411, 412, 413, 414, 415, 416, 417, 421, 422, 426,
                     500, 501, 502, 503, 504, 505 }) do
    UNDERSTOOD_STATUS[s] = true
end


-- RFC 9111 §5.1: Age is one non-negative integer. Anything else (a list, two
-- lines, a sign, a fraction, parameters) cannot be trusted: nil, and the
-- response is taken as already stale (stored, revalidated before reuse).
local function age_seconds(v)
    if v == nil then
        return 0
    end
    if type(v) == "string" then
        return tonumber(match(v, "^%s*(%d+)%s*$"))
    end
    return nil
end


-- RFC 9213 §2.1: CDN-Cache-Control is a Dictionary Structured Field (RFC 8941
-- §3.2): lowercase keys; values a Boolean (?1/?0), an Integer, a String, a Token
-- or a Decimal; parameters (;k=v) after each, which no directive uses. A field
-- that does not parse is ignored as a whole (nil), as RFC 8941 §4.2 requires.
-- Returns { directive = value|true } like parse (Integers and Tokens as their
-- text, Strings and Inner Lists as a table, which no directive takes as seconds).
local KEY = "^([a-z*][a-z0-9_%-%.%*]*)()"
local function sf_value(s, i)
    local v, j = match(s, "^(%-?%d+%.?%d*)()", i)
    if v then
        return v, j
    end
    -- a String or an Inner List: present, but never a number of seconds
    v, j = match(s, '^"([^"\\]*)"()', i)
    if v then
        return { v }, j
    end
    v, j = match(s, "^(%([^()]*%))()", i)
    if v then
        return { v }, j
    end
    v, j = match(s, "^(%?[01])()", i)
    if v then
        return v == "?1", j
    end
    v, j = match(s, "^([%a*][%w:/!#$%%&'*+%-%.^_`|~]*)()", i)
    if v then
        return v, j
    end
    return nil
end

local function sf_parameters(s, i)
    while byte(s, i) == 59 do -- ";"
        i = (match(s, "^;%s*()", i))
        local k, j = match(s, KEY, i)
        if not k then
            return nil
        end
        i = j
        if byte(s, i) == 61 then -- "="
            local _
            _, i = sf_value(s, i + 1)
            if not i then
                return nil
            end
        end
    end
    return i
end

function _M.parse_dictionary(value)
    if type(value) == "table" then
        value = concat(value, ",")
    end
    if not value or not find(value, "%S") then
        return nil
    end
    local d = {}
    local i = (match(value, "^%s*()"))
    local n = #value
    while i <= n do
        local k, j = match(value, KEY, i)
        if not k then
            return nil
        end
        local v = true
        i = j
        if byte(value, i) == 61 then -- "="
            v, i = sf_value(value, i + 1)
            if v == nil then
                return nil
            end
        end
        i = sf_parameters(value, i)
        if not i then
            return nil
        end
        d[k] = v
        i = (match(value, "^[ \t]*()", i))
        if i <= n then
            if byte(value, i) ~= 44 then -- ","
                return nil
            end
            i = (match(value, "^,[ \t]*()", i))
            if i > n then
                return nil -- a trailing comma
            end
        end
    end
    return d
end


local function seconds(v)
    if type(v) ~= "string" then
        return nil
    end
    local n = tonumber(match(v, "^%d+$"))
    return n
end


-- Inputs (all optional but status/now):
--   status, now (epoch s), authorization (bool: the request carried one),
--   store_5xx (bool: 5xx responses with explicit freshness may be stored),
--   max_5xx_ttl (s: the longest freshness of a stored 5xx; none when absent),
--   min_swr (s: the least stale-while-revalidate, 0 when absent),
--   set_cookie (bool: the response sets a cookie),
--   slice (bool: the request fetches one slice of a large object: a 206 is
--   that slice, stored as its own entry),
--   cache_control, cdn_cache_control, surrogate_control, expires, date,
--   age (the Age field: a string, or a table of its lines),
--   vary, parse_http_time (function), grace (s, stale-if-error default)
-- Returns a table:
--   store (bool), ttl (s of freshness left, may be <= 0), revalidate (bool:
--   store but revalidate before every reuse), swr, sie (seconds of stale use),
--   age (initial age at receipt), reason (why not stored)
function _M.decide(r)
    local out = { store = false, ttl = 0, swr = 0, sie = 0, age = 0 }
    if not storable_status(r.status, r.slice, r.store_5xx) then
        out.reason = "status"
        return out
    end
    -- nginx never stores a response that sets a cookie; say so consistently
    if r.set_cookie then
        out.reason = "set-cookie"
        return out
    end
    if r.vary and find(r.vary, "*", 1, true) then
        out.reason = "vary-star"
        return out
    end

    -- Which field speaks for this cache: CDN-Cache-Control, then
    -- Surrogate-Control, then Cache-Control (RFC 9213 §2, Fastly's precedence).
    local cc = _M.parse(r.cache_control) or {}
    local own = _M.parse_dictionary(r.cdn_cache_control) or _M.parse(r.surrogate_control)
    local d = own or cc

    -- RFC 9111 §5.2.2.3: must-understand stores only statuses whose caching
    -- rules the cache knows (those of RFC 9110), and then overrides no-store.
    local understood = d["must-understand"] and UNDERSTOOD_STATUS[r.status]
    if d["must-understand"] and not understood then
        out.reason = "must-understand"
        return out
    end
    -- `private` in the field that speaks for this cache forbids storing, whichever
    -- field that is (RFC 9111 §5.2.2.7, RFC 9213 §2: CDN-Cache-Control takes the
    -- same directives).
    if (d["no-store"] and not understood) or d["private"] then
        out.reason = "no-store"
        return out
    end
    -- RFC 9111 §3.5: a shared cache stores responses to authorized requests only
    -- when the response explicitly allows it, in the field that speaks for this
    -- cache: a CDN-specific field with only max-age does not (the victim's data
    -- would reach the next anonymous client).
    if r.authorization and not (d["public"] or d["s-maxage"] or d["must-revalidate"]) then
        out.reason = "authorization"
        return out
    end

    local parse_time = r.parse_http_time
    local date = r.date and parse_time and parse_time(r.date)
    local lifetime = (not own and seconds(d["s-maxage"])) or seconds(d["max-age"])
    if not lifetime and not own and r.expires and parse_time then
        local expires = parse_time(r.expires)
        if expires then
            lifetime = max(0, expires - (date or r.now))
        else
            lifetime = 0 -- an invalid Expires means "already expired"
        end
    end
    -- `no-cache` without field names: store, but revalidate before every reuse
    local revalidate_only = d["no-cache"] == true
    if not lifetime then
        if not revalidate_only then
            -- no explicit freshness: the CDN never guesses (no heuristic caching)
            out.reason = "no-freshness"
            return out
        end
        lifetime = 0
    end
    local error_status = r.status >= 500
    if error_status and r.max_5xx_ttl and lifetime > r.max_5xx_ttl then
        lifetime = r.max_5xx_ttl
    end

    -- RFC 9111 §4.2.3: initial age = max(apparent age, Age header)
    local apparent = date and max(0, r.now - date) or 0
    local header_age = age_seconds(r.age)
    local age = max(apparent, header_age or 0)
    out.age = age
    -- (an Age that cannot be read: stale from the start)
    out.ttl = header_age and lifetime - age or 0
    out.store = true

    -- s-maxage implies proxy-revalidate for shared caches (RFC 9111 §5.2.2.10)
    local strict = d["must-revalidate"]
                   or (not own and (d["proxy-revalidate"] or d["s-maxage"]))
    if revalidate_only then
        out.revalidate = true
    end
    -- (a stored error is never served once it ran out: not even while the
    -- origin still fails, when the edge's own 502 says as much)
    if not strict and not revalidate_only and not error_status then
        -- At least min_swr (cache.minStaleWhileRevalidate, 0 by default: the
        -- stampede at expiry is kept off the origin by proxy_cache_use_stale
        -- updating, which serves only requests that arrive during a refresh)
        out.swr = max(seconds(d["stale-while-revalidate"]) or 0, r.min_swr or 0)
        out.sie = seconds(d["stale-if-error"]) or (r.grace or 0)
    end
    return out
end


return _M
