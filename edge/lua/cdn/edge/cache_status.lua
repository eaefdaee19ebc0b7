-- The Cache-Status response header (RFC 9211) and Age (RFC 9111 §5.1), derived
-- from what nginx's proxy_cache did with this request.
local parse_http_time = ngx.parse_http_time
local time = ngx.time
local tonumber = tonumber
local max = math.max

local _M = { _VERSION = "0.1.0" }

-- $upstream_cache_status -> RFC 9211 parameters
local PARAMS = {
    HIT = "hit",
    STALE = "hit; detail=stale",
    UPDATING = "hit; detail=updating",
    MISS = "fwd=uri-miss",
    EXPIRED = "fwd=stale",
    REVALIDATED = "fwd=stale",
    BYPASS = "fwd=bypass",
}

local SERVED_FROM_CACHE = { HIT = true, STALE = true, UPDATING = true,
                            REVALIDATED = true }


-- `name` is this cache's sf-token (the edge id); `status` is
-- $upstream_cache_status (nil when the cache was not consulted).
function _M.value(name, status, upstream_status)
    local params = PARAMS[status]
    if not params then
        params = "fwd=method"
    end
    if not SERVED_FROM_CACHE[status] or status == "REVALIDATED" then
        local fwd_status = tonumber(upstream_status)
        if fwd_status then
            params = params .. "; fwd-status=" .. fwd_status
        end
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


-- Seconds since the stored response was generated, plus the Age the upstream
-- reported. nil when the response was not served from the cache.
function _M.age(status, upstream_date, upstream_age)
    if not SERVED_FROM_CACHE[status] then
        return nil
    end
    local generated = upstream_date and parse_http_time(upstream_date)
    if not generated then
        return nil
    end
    return max(0, time() - generated) + (tonumber(upstream_age) or 0)
end


return _M
