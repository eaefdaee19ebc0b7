-- Invalidation by writes (RFC 9111 §4.4): a successful unsafe request
-- invalidates its URL and those in Location and Content-Location on the same
-- host. Called by the public header filter (edge.lua) for unsafe methods only;
-- purges sent by the origin arrive over the stream instead (invalidation.lua).
-- Location and Content-Location usually name paths whose home is another
-- edge: the balancer has those edges invalidate them too, through their
-- internal listener (POST /invalidate, internal.lua, with invalidate_path).
-- Only paths that may have a stored response cost a generation counter
-- (stored.lua).
local key = require "cdn.key"
local generations = require "cdn.edge.generations"
local stored_paths = require "cdn.edge.stored"

local var = ngx.var
local header = ngx.header
local setmetatable = setmetatable

local _M = { _VERSION = "0.1.0" }

-- RFC 9111 §4.4: the success of any method not known to be safe invalidates
-- (M-SEARCH, a WebDAV method, anything new). edge.lua reads it as an upvalue.
local SAFE_METHODS = key.SAFE_METHODS
_M.UNSAFE_METHODS = setmetatable({}, {
    __index = function(_, method)
        return not SAFE_METHODS[method]
    end,
})


-- Invalidates `path` (a cache-key path, cdn.key) when a response for it may be
-- stored here; true when it did.
local function invalidate_if_stored(path)
    if path and stored_paths.may_exist(path) then
        generations.purge_path(path)
        return true
    end
    return false
end
_M.invalidate_path = invalidate_if_stored


-- An unsafe request to `path` (its cache-key path) was answered: on a success
-- (2xx, 3xx) invalidates the written paths and returns true.
function _M.invalidate_written(path)
    local code = ngx.status
    if code < 200 or code >= 400 then
        return false
    end
    invalidate_if_stored(path)
    local host, request_uri = key.host(var.http_host), var.request_uri
    invalidate_if_stored(key.location_path(header["Location"], host, request_uri))
    invalidate_if_stored(key.location_path(header["Content-Location"], host, request_uri))
    return true
end


return _M
