-- Signed downloads (digital goods) under the spec's downloads.prefixes
-- (docs/downloads.md): a request needs a token the origin signed
-- (POST /v1/signed-urls), verified here; the token never reaches the cache
-- key, the origin or a log, so one stored copy serves every buyer.
--
-- The token is the URL's query: exp, iat, kid, tid (its id), optionally uses
-- (a download limit) and ip (the buyer's address), and sig, the hex
-- HMAC-SHA256 under key kid of "dl\n<path>?<the other fields, names sorted>".
--
-- Where the work happens, so a buyer's HIT costs little more than any HIT:
--   verify     in the key lookup, once per distinct URL (memoised with the key)
--   check      every request: expiry, revocation (two shared-dict reads)
--   access     only for tokens with a use limit (a location of their own):
--              the bytes already served, from Redis, fleet-wide
--   log        only for those too: the bytes this response sent, into Redis
--   revoke     from the purge stream (invalidation.lua): a token id, or every
--              token of a path issued before the revocation
local key = require "cdn.key"
local signature = require "cdn.edge.signature"
local redis = require "cdn.redis"

local var = ngx.var
local header = ngx.header
local now = ngx.time
local decode_args = ngx.decode_args
local find = string.find
local sub = string.sub
local match = string.match
local tonumber = tonumber
local type = type
local pairs = pairs
local ipairs = ipairs
local log = ngx.log
local WARN = ngx.WARN

local _M = { _VERSION = "0.1.0" }

local CLOCK_SKEW = signature.CLOCK_SKEW

local CLAIMS = { exp = true, iat = true, kid = true, tid = true, uses = true, ip = true }
local MAX_ARGS = 16

local prefixes = {}
local revoked
-- seconds a revocation is kept: longer than any token lives
local revocation_ttl = 8 * 86400
local counter -- where use counts live: { host, port, tls = {serverName}? }
local password


-- init_by_lua (from edge.lua's init).
function _M.init(settings)
    prefixes = settings.downloads and settings.downloads.prefixes or {}
    if settings.downloads then
        revocation_ttl = settings.downloads.maxTtl + 86400
    end
    -- use counts are writes: the primary, also when the stream is read from a replica
    counter = settings.acknowledge or settings.redis
    password = settings.redis_password
end


function _M.enabled()
    return #prefixes > 0
end


-- Whether `path` (decoded) is under a protected prefix.
function _M.protected(path)
    for i = 1, #prefixes do
        local p = prefixes[i]
        if sub(path, 1, #p) == p then
            return true
        end
    end
    return false
end


local function denied(why)
    return nil, "403 download token: " .. why
end


-- The key lookup, once per distinct URL: the token's claims, or nil and
-- "<status> <reason>" (403: no token, a bad signature, a malformed claim).
-- Expiry and revocation are checked per request (check).
function _M.verify(path, args)
    if not args or args == "" then
        return denied("this download needs a signed URL")
    end
    -- the signature must be spelled "sig=": access logs redact exactly that
    -- (decode_args would also take "%73ig=")
    if not find("&" .. args, "&sig=", 1, true) then
        return denied("this download needs a signed URL")
    end
    -- the claims and the signature; other parameters are neither signed nor used
    local given = {}
    for name, value in pairs(decode_args(args, MAX_ARGS)) do
        if CLAIMS[name] or name == "sig" then
            if type(value) ~= "string" or not find(value, "^[%w.:_-]+$") then
                return denied(name .. " must be given once, as letters, digits or . : _ -")
            end
            given[name] = value
        end
    end
    local exp, iat = tonumber(given.exp), tonumber(given.iat)
    if not (exp and iat and given.tid and given.kid and given.sig) then
        return denied("exp, iat, kid, tid and sig are required")
    end
    local ok, why = signature.verify_fields("dl\n", path, given)
    if not ok then
        return denied(why)
    end
    local uses = given.uses and tonumber(given.uses)
    if given.uses and not (uses and uses >= 1) then
        return denied("uses must be a positive number")
    end
    return { path = path, exp = exp, iat = iat, tid = given.tid, uses = uses, ip = given.ip }
end


-- Whether this edge has loaded the revocations kept in Redis since it started
-- (invalidation.lua): until then no token is honoured, as any could be revoked.
local revocations_known = false

-- Every request: nil when the token may be used now, else "<status> <reason>".
function _M.check(claims)
    if not revocations_known then
        revocations_known = ngx.shared.cdn_state:get("revocations_loaded") ~= nil
        if not revocations_known then
            return "503 downloads wait until this edge has read the revocations; retry"
        end
    end
    if now() > claims.exp + CLOCK_SKEW then
        return "403 download token: expired"
    end
    -- the balancer's X-Forwarded-For ends with the client address it settled on
    -- (after a trusted proxy's, when there is one)
    if claims.ip and claims.ip ~= match(var.http_x_forwarded_for or "", "([^,%s]+)%s*$") then
        return "403 download token: issued for another address"
    end
    if revoked:get("t:" .. claims.tid) then
        return "403 download token: revoked"
    end
    local at = revoked:get("p:" .. claims.path)
    if at and claims.iat <= at then
        return "403 download token: revoked"
    end
    return nil
end


-- Header filter addition: the response belongs to one buyer, for as long as
-- the token lives, and its URL (the token) must not leak through Referer.
function _M.headers(claims)
    -- (refusals and errors keep what they say: no-store, or the origin's)
    local status = ngx.status
    if status ~= 200 and status ~= 206 and status ~= 304 then
        return
    end
    local left = claims.exp - now()
    -- in place of the origin's, which the public header filter left for
    -- nginx to add (edge.lua restore_cache_control)
    var.cdn_cc = ""
    header["Cache-Control"] = "private, max-age=" .. (left > 0 and left or 0)
    header["Referrer-Policy"] = "no-referrer"
end


local function connect()
    return redis.open(counter, password, 500)
end


local function warn_later(premature, message)
    if not premature then
        log(WARN, message)
    end
end


local function count_key(tid)
    return "cdn:downloads:" .. tid
end


-- access_by_lua of the use-limited location: the bytes the fleet already
-- served under this token against uses x the object's size (so a download
-- split into ranges counts the same as one). Fails closed: without the
-- counter a use-limited token is refused (503), plain expiring ones never come
-- here.
function _M.access()
    local claims = ngx.ctx.download
    if not claims or not claims.uses then
        return
    end
    local red, err = connect()
    local counts
    if red then
        counts, err = red:hmget(count_key(claims.tid), "bytes", "size")
        if counts then
            red:set_keepalive(60000, 32)
        end
    end
    if not counts then
        -- (from a timer: a line logged in the request names its URL, the token)
        ngx.timer.at(0, warn_later, "downloads: use counter unreachable: " .. tostring(err))
        ngx.status = 503
        header["Retry-After"] = "5"
        header["Cache-Control"] = "no-store"
        ngx.say("service unavailable: the download counter cannot be reached; retry shortly")
        return ngx.exit(503)
    end
    local bytes, size = tonumber(counts[1]), tonumber(counts[2])
    if bytes and size and bytes >= claims.uses * size then
        ngx.status = 403
        header["Cache-Control"] = "no-store"
        ngx.say("forbidden: download token: used up (", claims.uses, " downloads)")
        return ngx.exit(403)
    end
end


local function record(premature, tid, sent, size, expire_at)
    if premature then
        return
    end
    local red, err = connect()
    if not red then
        log(WARN, "downloads: could not count ", sent, " bytes of token ", tid, ": ", err)
        return
    end
    local k = count_key(tid)
    red:init_pipeline()
    red:hincrby(k, "bytes", sent)
    red:hset(k, "size", size)
    red:expireat(k, expire_at)
    local _, perr = red:commit_pipeline()
    if perr then
        log(WARN, "downloads: could not count bytes of token ", tid, ": ", perr)
        return
    end
    red:set_keepalive(60000, 32)
end


-- log_by_lua of the use-limited location: the body bytes this response sent.
-- (cosockets are not allowed in the log phase: a timer does the write)
function _M.log()
    local claims = ngx.ctx.download
    if not claims or not claims.uses then
        return
    end
    local sent = tonumber(var.body_bytes_sent) or 0
    if sent == 0 or ngx.status >= 300 then
        return
    end
    -- the whole object's size: Content-Range's total for a 206, else the length
    local range = var.sent_http_content_range
    local size = range and tonumber(match(range, "/(%d+)$"))
                 or tonumber(var.sent_http_content_length)
    if size then
        ngx.timer.at(0, record, claims.tid, sent, size, claims.exp + 86400)
    end
end


-- safe_set: a full zone refuses the new revocation (logged) rather than
-- silently evicting an older one, which would make that token work again.
local function remember(k, v, ttl)
    local ok, err = revoked:safe_set(k, v, ttl)
    if not ok then
        log(ngx.ERR, "downloads: revocation not kept (", err, "): raise cdn_revoked")
    end
end


-- At start (invalidation.lua, once per shared-memory lifetime): the
-- revocations kept in Redis (the hash POST /v1/signed-urls/revoke writes), so a
-- restarted edge knows those older than the stream it replays. Fields:
-- "t:<token id>" = "<until ms>", "p:<path>" = "<revoked at ms>:<until ms>".
function _M.load_revocations(red, hash)
    local all, err = red:hgetall(hash)
    if not all then
        return nil, err
    end
    local t = ngx.now()
    local n = 0
    for i = 1, #all, 2 do
        local field, value = all[i], all[i + 1]
        local kind = sub(field, 1, 2)
        if kind == "t:" then
            local left = (tonumber(value) or 0) / 1000 - t
            if left > 0 then
                remember(field, true, left)
                n = n + 1
            end
        elseif kind == "p:" then
            local at, untl = match(value, "^(%d+):(%d+)$")
            local left = (tonumber(untl) or 0) / 1000 - t
            if at and left > 0 then
                remember(field, tonumber(at) / 1000, left)
                n = n + 1
            end
        end
    end
    return n
end


-- From the purge stream (invalidation.lua): { tokens = {tid...}, keys = {path...} }
-- published at `at` (ms). Kept a day longer than any token lives.
function _M.revoke(r, at)
    local max_ttl = revocation_ttl
    local n = 0
    local seconds = (tonumber(at) or now() * 1000) / 1000
    if type(r.tokens) == "table" then
        for _, tid in ipairs(r.tokens) do
            if type(tid) == "string" then
                remember("t:" .. tid, true, max_ttl)
                n = n + 1
            end
        end
    end
    if type(r.keys) == "table" then
        for _, p in ipairs(r.keys) do
            local path = type(p) == "string" and key.purge_path(p)
            if path then
                remember("p:" .. path, seconds, max_ttl)
                n = n + 1
            end
        end
    end
    return n
end


revoked = ngx.shared.cdn_revoked

return _M
