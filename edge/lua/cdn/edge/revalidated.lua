-- What a 304 revalidation said about a stored response.
--
-- nginx answers from the stored copy after a 304 but never rewrites its stored
-- headers (only its own expiry), so X-Cdn-Meta keeps the times and the
-- Cache-Control of the first fetch. The internal hop records the meta the 304
-- gives (RFC 9111 §4.3.4: the stored headers are updated from it) under the
-- cache key, and the public header filter prefers it over the stored one once
-- the stored one has run out: Age, ttl and Cache-Control then follow the latest
-- revalidation. An entry lives while the refreshed response may be served
-- (fresh, then stale within its limits); a lost entry (the zone evicts the
-- least recently used when full) only means Age and ttl are left out, as
-- before, never a wrong claim.
local _M = { _VERSION = "0.1.0" }

local dict = ngx.shared.cdn_revalidated


function _M.record(cache_key, meta, seconds)
    if dict and seconds > 0 then
        dict:set(cache_key, meta, seconds)
    end
end


function _M.meta(cache_key)
    return dict and dict:get(cache_key)
end


return _M
