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
--
-- The internal hop cannot read the stored headers either when it revalidates,
-- so two facts about the stored response are kept for it, in the cdn_freshness
-- zone: its freshness fields (a 304 that carries none leaves them in force) and
-- whether it is a 5xx (its revalidation then passes the origin's 5xx on).
local parse_http_time = ngx.parse_http_time
local match = string.match
local gmatch = string.gmatch
local type = type
local concat = table.concat
local pairs = pairs

-- Fields a 304 does not renew (RFC 9111 §3.2): the body's length, the fields
-- that describe the stored bytes themselves (Content-Encoding, Content-Range,
-- Content-MD5: a 304 has no body they could describe), hop-by-hop fields, the
-- validators the record is filed under, what this edge manages itself (Age,
-- Cache-Control and Expires ride in the meta and the stored copy's own headers;
-- the X-Cdn-/X-Accel- hop fields; tags), and Set-Cookie, which a shared cache
-- never hands to every client (unless cache.storeSetCookie: see record).
local NOT_RENEWED = {
    ["content-length"] = true, ["content-encoding"] = true,
    ["content-range"] = true, ["content-md5"] = true,
    ["transfer-encoding"] = true, connection = true,
    ["keep-alive"] = true, ["proxy-connection"] = true, upgrade = true, te = true,
    trailer = true, etag = true, ["last-modified"] = true, age = true,
    ["cache-control"] = true, ["x-cdn-meta"] = true, ["x-accel-expires"] = true,
    ["cdn-cache-control"] = true, ["surrogate-control"] = true,
    ["surrogate-key"] = true, ["cache-status"] = true, server = true,
    ["set-cookie"] = true, ["x-request-id"] = true,
}

local _M = { _VERSION = "0.2.0" }

local dict = ngx.shared.cdn_revalidated
local freshness_dict = ngx.shared.cdn_freshness


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


-- The record of a 304: its meta, then one "name: value" line per field it
-- renews (`headers`: the 304's, as ngx.resp.get_headers gives them).
-- `cookies`: Set-Cookie is renewed too (cache.storeSetCookie: responses that
-- set a cookie are stored, so the cookie is theirs to renew).
function _M.record(cache_key, validator, meta, seconds, headers, cookies)
    if not dict or seconds <= 0 then
        return
    end
    local lines = { meta }
    for name, value in pairs(headers or {}) do
        if not NOT_RENEWED[name] or (cookies and name == "set-cookie") then
            if type(value) == "table" then
                for i = 1, #value do
                    lines[#lines + 1] = name .. ": " .. value[i]
                end
            else
                lines[#lines + 1] = name .. ": " .. value
            end
        end
    end
    dict:set(entry(cache_key, validator), concat(lines, "\n"), seconds)
end


-- Splits a record: its meta, and the renewed fields as { {name, value}, ... }
-- where value is a string, or a table for a field of several lines (nil when
-- the 304 renewed none).
function _M.split(record)
    local meta, rest = match(record, "^([^\n]*)\n?(.*)$")
    local fields, at
    for name, value in gmatch(rest, "([^:\n]+): ([^\n]*)") do
        fields, at = fields or {}, at or {}
        local f = at[name]
        if not f then
            f = { name, value }
            at[name] = f
            fields[#fields + 1] = f
        elseif type(f[2]) == "table" then
            f[2][#f[2] + 1] = value
        else
            f[2] = { f[2], value }
        end
    end
    return meta, fields
end


-- The fields that decide a stored response's freshness (Cache-Control,
-- CDN-Cache-Control, Surrogate-Control, Expires; each may be nil), kept from
-- when it was stored: a 304 that carries none of them leaves these in force
-- (RFC 9111 §4.3.4), and nginx does not hand the stored ones to the internal hop.
-- `seconds`: as long as the stored response may be kept.
local SEP = "\0"
function _M.keep_freshness_fields(cache_key, validator, fields, seconds)
    if not freshness_dict or not (fields[1] or fields[2] or fields[3] or fields[4]) then
        return
    end
    freshness_dict:set(entry(cache_key, validator), (fields[1] or "") .. SEP
             .. (fields[2] or "") .. SEP .. (fields[3] or "") .. SEP
             .. (fields[4] or ""), seconds)
end


-- Those fields as { cc, cdn_cc, surrogate_control, expires } (nil for absent
-- ones), or nil when they were not kept (evicted, or stored before this edge
-- started).
function _M.freshness_fields(cache_key, validator)
    local v = freshness_dict and freshness_dict:get(entry(cache_key, validator))
    if not v then
        return nil
    end
    local out, i = {}, 0
    for value in gmatch(v .. SEP, "([^%z]*)%z") do
        i = i + 1
        out[i] = value ~= "" and value or nil
    end
    return out
end


-- Whether the response stored under `cache_key` is a 5xx (see store_status):
-- its revalidation then passes the origin's 5xx on instead of dropping it.
-- Kept in the cdn_freshness zone under "5\n" .. cache_key, for 5xx only.
function _M.store_status(cache_key, status, seconds)
    if not freshness_dict then
        return
    end
    if status >= 500 then
        freshness_dict:set("5\n" .. cache_key, true, seconds)
    else
        freshness_dict:delete("5\n" .. cache_key)
    end
end


function _M.stored_error(cache_key)
    return freshness_dict and freshness_dict:get("5\n" .. cache_key) or false
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
