-- Header filter of the debug location (requests with X-Cdn-Debug, which
-- nginx.conf rewrites to /__cdn_debug so that no other request pays for it):
-- the public header filter's headers, plus the cache key, the negotiated
-- variant and the purge tags when X-Cdn-Debug carries the debug token (scope
-- debug: it unlocks these headers and nothing at the origin).
local settings_loader = require "cdn.settings"
local key = require "cdn.key"
local tags = require "cdn.edge.tags"

local var = ngx.var
local header = ngx.header
local sha1_bin = ngx.sha1_bin

local _M = { _VERSION = "0.1.0" }

-- kept as a digest: compared with a digest of what a request presents
local debug_token_digest
-- edge.lua's header_filter (given by init: edge.lua requires this module)
local public_header_filter


-- init_by_lua (from edge.lua's init).
function _M.init(settings, header_filter)
    if settings.debugTokenFile then
        debug_token_digest = sha1_bin(settings_loader.read_secret(settings.debugTokenFile))
    end
    public_header_filter = header_filter
end


function _M.header_filter()
    -- (its sent bytes are counted in the log phase, as for HEAD and Range)
    public_header_filter(true)
    local given = var.http_x_cdn_debug
    if not debug_token_digest or sha1_bin(given) ~= debug_token_digest then
        header["X-Cdn-Debug"] = "denied: X-Cdn-Debug must carry the debug token"
        return
    end
    header["X-Cdn-Debug-Key"] = var.cdn_cache_key
    header["X-Cdn-Debug-Variant"] = "accept-encoding="
        .. (var.http_accept_encoding or "identity") .. "; accept="
        .. (var.http_accept or "*/*")
    -- the tags a purge would find this path by (Surrogate-Key is not stored;
    -- "" once a tag purge has dropped the path until it is fetched again)
    local path = key.path(var.request_uri)
    header["X-Cdn-Debug-Tags"] = path and tags.indexed(path) or ""
end


return _M
