-- Invalidation by writes (RFC 9111 §4.4): a successful unsafe request
-- invalidates its URL and those in Location and Content-Location on the same
-- host. Called by the public header filter (edge.lua) for unsafe methods only;
-- purges sent by the origin arrive over the stream instead (invalidation.lua).
-- Only paths that may have a stored response cost a generation counter
-- (stored.lua).
local key = require "cdn.key"
local generations = require "cdn.edge.generations"
local stored_paths = require "cdn.edge.stored"

local var = ngx.var
local header = ngx.header
local match = string.match
local gsub = string.gsub
local byte = string.byte
local type = type
local setmetatable = setmetatable

local _M = { _VERSION = "0.1.0" }

-- RFC 9111 §4.4: the success of any method not known to be safe invalidates
-- (M-SEARCH, a WebDAV method, anything new). edge.lua reads it as an upvalue.
local SAFE_METHODS = { GET = true, HEAD = true, OPTIONS = true, TRACE = true,
                       PROPFIND = true, REPORT = true, SEARCH = true }
_M.UNSAFE_METHODS = setmetatable({}, {
    __index = function(_, method)
        return not SAFE_METHODS[method]
    end,
})


-- The path a Location / Content-Location value names on the request's host
-- (absolute, scheme-relative, absolute-path or relative reference), or nil for
-- another host or a target the cache key would refuse.
local function same_host_path(value)
    if type(value) ~= "string" or value == "" then
        return nil
    end
    local authority, rest = match(value, "^[%a][%w+.-]*://([^/?#]*)(.*)$")
    if not authority then
        authority, rest = match(value, "^//([^/?#]*)(.*)$")
    end
    if authority then
        if key.host(authority) ~= key.host(var.http_host) then
            return nil
        end
        value = rest == "" and "/" or rest
    elseif byte(value, 1) ~= 47 then -- relative to the request's directory
        value = match(var.request_uri, "^([^?]*/)") .. value
    end
    return (key.purge_path((gsub(value, "#.*$", ""))))
end


local function invalidate_if_stored(path)
    if path and stored_paths.may_exist(path) then
        generations.purge_path(path)
    end
end


-- An unsafe request to `path` (its cache-key path) was answered: on a success
-- (2xx, 3xx) invalidates the written paths and returns true.
function _M.invalidate_written(path)
    local code = ngx.status
    if code < 200 or code >= 400 then
        return false
    end
    invalidate_if_stored(path)
    invalidate_if_stored(same_host_path(header["Location"]))
    invalidate_if_stored(same_host_path(header["Content-Location"]))
    return true
end


return _M
