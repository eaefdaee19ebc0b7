-- What a 304 revalidation said about a stored response.
--
-- nginx answers from the stored copy after a 304 but never rewrites its stored
-- headers (only its own expiry), so X-Cdn-Meta keeps the times and the
-- Cache-Control of the first fetch. The internal hop records the meta the 304
-- gives (RFC 9111 §4.3.4: the stored headers are updated from it), and the
-- public header filter prefers it over the stored one once the stored one has
-- run out: Age, ttl and Cache-Control then follow the latest revalidation.
--
-- A record belongs to one stored response: its cache key (with the slice range
-- for sliced objects) and its validator, the stored ETag (else Last-Modified)
-- that nginx sent as If-None-Match (If-Modified-Since). Vary variants of one
-- key have their own. A newly stored response drops the record under its own
-- validator, so a record never speaks for a response fetched after it.
-- A record lives while the refreshed response may be served (fresh, then stale
-- within its limits); a lost one (the zone evicts the least recently used when
-- full) only means Age and ttl are left out, never a wrong claim.
local parse_http_time = ngx.parse_http_time

local _M = { _VERSION = "0.2.0" }

local dict = ngx.shared.cdn_revalidated


-- "e:<etag>" or "m:<epoch seconds>" (a date's format may differ between the
-- stored header and nginx's If-Modified-Since), or nil without either.
function _M.validator(etag, last_modified)
    if etag then
        return "e:" .. etag
    end
    local t = last_modified and parse_http_time(last_modified)
    return t and ("m:" .. t) or nil
end


local function entry(cache_key, validator)
    return cache_key .. "\n" .. validator
end


function _M.record(cache_key, validator, meta, seconds)
    if dict and seconds > 0 then
        dict:set(entry(cache_key, validator), meta, seconds)
    end
end


function _M.forget(cache_key, validator)
    if dict then
        dict:delete(entry(cache_key, validator))
    end
end


function _M.meta(cache_key, validator)
    return dict and dict:get(entry(cache_key, validator))
end


return _M
