-- The Cache-Status response header (RFC 9211), derived from what nginx's
-- proxy_cache did with this request.
local tonumber = tonumber

local _M = { _VERSION = "0.2.0" }

-- $upstream_cache_status -> RFC 9211 parameters
local PARAMS = {
    HIT = "hit",
    STALE = "hit",       -- served stale (origin failing): ttl is negative
    UPDATING = "hit",    -- served stale while refreshing: ttl is negative
    MISS = "fwd=uri-miss",
    EXPIRED = "fwd=stale",
    REVALIDATED = "fwd=stale",
    BYPASS = "fwd=bypass",
}

local SERVED_FROM_CACHE = { HIT = true, STALE = true, UPDATING = true }


-- `name` is this cache's sf-token (the edge id); `status` is
-- $upstream_cache_status (nil when the cache was not consulted: other methods);
-- `ttl` the remaining freshness of a stored response; `stored` whether a fetched
-- response was stored.
function _M.value(name, status, upstream_status, ttl, stored)
    local params = PARAMS[status] or "fwd=method"
    if not SERVED_FROM_CACHE[status] then
        local fwd_status = tonumber(upstream_status)
        if fwd_status then
            params = params .. "; fwd-status=" .. fwd_status
        end
    end
    if ttl then
        params = params .. "; ttl=" .. ttl
    end
    if stored then
        params = params .. "; stored"
    end
    return name .. "; " .. params
end


-- Appends this cache's member after any member the upstream already sent
-- (members are listed origin-nearest first).
function _M.header(existing, member)
    if existing and existing ~= "" then
        return existing .. ", " .. member
    end
    return member
end


return _M
