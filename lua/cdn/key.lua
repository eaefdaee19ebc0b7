-- Cache-key normalisation, shared by the edge (cache key, purge matching) and the
-- balancer (consistent hashing), so both agree on what "the same object" is.
local byte = string.byte
local find = string.find
local lower = string.lower
local sub = string.sub
local gsub = string.gsub
local gmatch = string.gmatch
local match = string.match
local tonumber = tonumber
local concat = table.concat
local sort = table.sort
local type = type
local pairs = pairs
local tostring = tostring
local unescape_uri = ngx.unescape_uri
local escape_uri = ngx.escape_uri
local decode_args = ngx.decode_args

local _M = { _VERSION = "0.1.0" }

local MAX_ARGS = 64

-- Query parameters that only feed marketing analytics: they never change the
-- response, so keeping them in the key would only multiply copies (cache busting).
local DROPPED_PARAMS = {
    gclid = true, fbclid = true, msclkid = true, dclid = true, yclid = true,
    mc_cid = true, mc_eid = true, _ga = true, _gl = true, igshid = true,
}


local function dropped(name)
    return DROPPED_PARAMS[name] or sub(name, 1, 4) == "utm_"
end


-- Lowercases the host and drops a default port, so that "SHOP.example:443" and
-- "shop.example" share one key.
function _M.host(raw)
    if not raw or raw == "" then
        return ""
    end
    local host = lower(raw)
    local colon = find(host, ":", 1, true)
    if colon then
        local port = sub(host, colon + 1)
        if port == "80" or port == "443" or port == "" then
            host = sub(host, 1, colon - 1)
        end
    end
    return host
end


-- Returns the decoded path of a raw request target, or nil and a reason when the
-- target tries traversal or encoded-separator tricks (nginx itself would resolve
-- "/a/%2e%2e/b" to "/b", so the raw form is checked before it does).
function _M.path(request_uri)
    if type(request_uri) ~= "string" or byte(request_uri, 1) ~= 47 then -- "/"
        return nil, "request target must start with /"
    end
    local q = find(request_uri, "?", 1, true)
    local raw = q and sub(request_uri, 1, q - 1) or request_uri
    if find(raw, "%", 1, true) then
        local l = lower(raw)
        if find(l, "%2f", 1, true) or find(l, "%5c", 1, true) or find(l, "%00", 1, true) then
            return nil, "encoded separator or NUL in path"
        end
        -- unescape_uri also turns "+" into a space (form encoding); in a path
        -- "+" is a plain character, so it is protected first
        raw = unescape_uri((gsub(raw, "%+", "%%2B")))
    end
    if find(raw, "\\", 1, true) or find(raw, "\0", 1, true) then
        return nil, "backslash or NUL in path"
    end
    -- any "." or ".." segment is refused rather than resolved
    if find(raw, "/%.%.?/") or find(raw, "/%.%.?$") then
        return nil, "dot segment in path"
    end
    -- "//" is one "/", as nginx's location matching sees it (merge_slashes):
    -- a path must name the same object here as in nginx.conf's ^~ locations
    -- (a protected download prefix), whatever the slashes
    if find(raw, "//", 1, true) then
        raw = gsub(raw, "//+", "/")
    end
    return raw
end


-- What the balancer hashes to pick an edge: the host and the decoded path, the
-- same normalisation as the edge's cache key minus the query and generations, so
-- every query variant of an asset lives (and is purged) on one edge. Returns nil
-- and a reason for a target the edge would refuse too.
function _M.object(raw_host, request_uri)
    local path, err = _M.path(request_uri)
    if not path then
        return nil, err
    end
    return _M.host(raw_host) .. path
end


local function encode(s)
    return escape_uri(s)
end


-- Sorted, filtered query string: parameter order and marketing parameters do not
-- create new cache entries. Returns "" when nothing is left.
function _M.query(args)
    if not args or args == "" then
        return ""
    end
    local decoded = decode_args(args, MAX_ARGS)
    local names, n = {}, 0
    for name in pairs(decoded) do
        if type(name) == "string" and not dropped(lower(name)) then
            n = n + 1
            names[n] = name
        end
    end
    if n == 0 then
        return ""
    end
    sort(names)
    local parts, m = {}, 0
    for i = 1, n do
        local name = names[i]
        local value = decoded[name]
        if type(value) == "table" then
            sort(value, function(a, b) return tostring(a) < tostring(b) end)
            for j = 1, #value do
                m = m + 1
                parts[m] = value[j] == true and encode(name)
                           or encode(name) .. "=" .. encode(value[j])
            end
        elseif value == true then
            m = m + 1
            parts[m] = encode(name)
        else
            m = m + 1
            parts[m] = encode(name) .. "=" .. encode(value)
        end
    end
    return concat(parts, "&")
end


-- Content negotiation inputs are reduced to the few values that change a
-- response, so junk or merely different header values cannot multiply stored
-- variants (ATS CVE-2024-35296 is the failure mode).
function _M.accept_encoding(raw)
    if not raw or raw == "" then
        return "identity"
    end
    local br, gzip
    for coding in gmatch(lower(raw), "[^,]+") do
        local name = match(coding, "^%s*([%w%-%*]+)")
        local q = tonumber(match(coding, ";%s*q%s*=%s*([%d.]+)"))
        if name and (not q or q > 0) then
            if name == "br" or name == "*" then
                br = true
            end
            if name == "gzip" or name == "*" then
                gzip = true
            end
        end
    end
    return br and "br" or (gzip and "gzip" or "identity")
end


-- Image requests (browsers send Accept starting with "image/" for <img>):
-- avif, webp or anything. Other Accept values (pages, APIs) are left alone.
function _M.image_accept(raw)
    if not raw or sub(raw, 1, 6) ~= "image/" then
        return nil
    end
    if find(raw, "image/avif", 1, true) then
        return "image/avif,*/*"
    end
    if find(raw, "image/webp", 1, true) then
        return "image/webp,*/*"
    end
    return "*/*"
end


-- Purge targets arrive as paths (the origin normalises full URLs to paths); run
-- them through the same rules so a purge names exactly what a request keyed.
function _M.purge_path(p)
    if type(p) ~= "string" then
        return nil, "path must be a string"
    end
    return _M.path((gsub(p, "%?.*$", "")))
end


-- Methods whose success invalidates nothing (RFC 9111 §4.4: any other does,
-- M-SEARCH and methods yet to be invented included).
_M.SAFE_METHODS = { GET = true, HEAD = true, OPTIONS = true, TRACE = true,
                    PROPFIND = true, REPORT = true, SEARCH = true }


-- The cache-key path a Location / Content-Location value names on `host` (a
-- normalised host, _M.host) for a request to `request_uri`: absolute,
-- scheme-relative, absolute-path or relative reference. nil for another host or
-- a target the key refuses. Used where a write invalidates what it names (RFC
-- 9111 §4.4): the edge that answered it and the balancer, which reads it the same way.
function _M.location_path(value, host, request_uri)
    if type(value) ~= "string" or value == "" then
        return nil
    end
    local authority, rest = match(value, "^[%a][%w+.-]*://([^/?#]*)(.*)$")
    if not authority then
        authority, rest = match(value, "^//([^/?#]*)(.*)$")
    end
    if authority then
        if _M.host(authority) ~= host then
            return nil
        end
        value = rest == "" and "/" or rest
    elseif byte(value, 1) ~= 47 then -- relative to the request's directory
        value = match(request_uri, "^([^?]*/)") .. value
    end
    return (_M.purge_path((gsub(value, "#.*$", ""))))
end


return _M
