-- Signed URLs: HMAC-SHA256 over a message the caller builds (for image
-- variants, the path and the sorted parameters; see images.lua), under a key
-- named by its id, so keys rotate: every key in the file is accepted, the
-- first is the one signers use (docs/images.md, spec secrets.urlSigningKeys).
local settings_loader = require "cdn.settings"
local crypto = require "cdn.edge.crypto"

local hmac = crypto.hmac
local hex = crypto.hex
local equal = crypto.equal
local gmatch = string.gmatch
local match = string.match
local lower = string.lower
local sort = table.sort
local concat = table.concat
local pairs = pairs

local _M = { _VERSION = "0.1.0" }

-- Seconds a signed URL is still accepted after its exp (clocks of the signer and
-- this edge differ a little).
_M.CLOCK_SKEW = 5

-- key id -> secret; empty when the target provides no key file (nothing signed
-- is then accepted)
local keys = {}


-- init_by_lua: reads "<id>:<secret>,<id>:<secret>" from the key file.
function _M.init(keys_file)
    keys = {}
    if not keys_file then
        return
    end
    for pair in gmatch(settings_loader.read_secret(keys_file), "[^,%s]+") do
        local id, secret = match(pair, "^([%w_-]+):(.+)$")
        if not id then
            error("url signing keys: expected <id>:<secret> pairs separated by commas", 2)
        end
        keys[id] = secret
    end
end


-- true, or false and why (unknown key id, bad signature). `signature` is the
-- 64 hex digits of HMAC-SHA256(secret, message); compared in constant time.
function _M.verify(message, key_id, signature)
    local secret = key_id and keys[key_id]
    if not secret then
        return false, "unknown key id"
    end
    if not signature or not equal(hex(hmac(secret, message)), lower(signature)) then
        return false, "signature does not match"
    end
    return true
end



-- A signed URL's check: `sig` over "<prefix><path>?<name>=<value>&..." for every
-- field but `sig` (names sorted, values as sent), under the key `fields.kid`
-- names. The signers (origin/src/common/url-signature.ts) build the same message.
function _M.verify_fields(prefix, path, fields)
    local names, n = {}, 0
    for name in pairs(fields) do
        if name ~= "sig" then
            n = n + 1
            names[n] = name
        end
    end
    sort(names)
    for i = 1, n do
        names[i] = names[i] .. "=" .. fields[names[i]]
    end
    return _M.verify(prefix .. path .. "?" .. concat(names, "&"), fields.kid, fields.sig)
end


return _M
