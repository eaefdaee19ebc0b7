-- The internal hop (a unix socket between the public server's cache and the
-- upstreams): nginx.conf's fetch server calls `upstream` (set_by_lua),
-- `header_filter`, `body_filter` (with S3 storage) and, from @bucket_refused,
-- `bucket_refused`. Every miss and revalidation passes here, never a hit.
--
-- Freshness is decided once, in the header filter, before nginx stores the
-- response. What browsers must see is kept in X-Cdn-* fields that nginx does
-- not interpret (X-Cdn-Meta, see meta.lua); the public server restores them.
local key = require "cdn.key"
local freshness = require "cdn.edge.freshness"
local invalidation = require "cdn.edge.invalidation"
local stored_paths = require "cdn.edge.stored"
local bucket = require "cdn.edge.bucket"
local revalidated = require "cdn.edge.revalidated"
local meta = require "cdn.edge.meta"
local images = require "cdn.edge.images"
local downloads = require "cdn.edge.downloads"
local tags = require "cdn.edge.tags"

local var = ngx.var
local header = ngx.header
local ngx_exit = ngx.exit
local now = ngx.time
local ngx_now = ngx.now
local parse_http_time = ngx.parse_http_time
local get_headers = ngx.resp.get_headers
local log = ngx.log
local WARN = ngx.WARN
local pcall = pcall
local tonumber = tonumber
local max = math.max
local sub = string.sub
local find = string.find
local gsub = string.gsub
local byte = string.byte
local gmatch = string.gmatch
local lower = string.lower
local concat = table.concat
local type = type
local meta_value = meta.value

local _M = { _VERSION = "0.1.0" }

-- the edge's settings, given by edge.lua's init
local settings

local DEFAULT_UPSTREAM = "http://origin"


-- init_by_lua (from edge.lua's init): the settings this hop reads per request.
function _M.init(s)
    settings = s
    if settings.bucket then
        bucket.init(settings.bucket)
    end
end


-- A field as one string: list fields joined, single-value fields by their
-- first line (origins behind middleware send duplicates).
local function field(h, name, list)
    local v = h[name]
    if type(v) ~= "table" then
        return v
    end
    return list and concat(v, ", ") or v[1]
end


-- Header filter: freshness, X-Cdn-Meta, and the Cache-Control and
-- X-Accel-Expires that tell nginx whether and how long to store the response.
function _M.header_filter()
    if ngx.status < 200 then
        -- nginx 1.22 takes a 1xx (103 Early Hints) as the final response and
        -- would read the real one as its body until the origin closes the
        -- connection: the client would wait for the read timeout. Answer 502 at
        -- once instead, on a connection the public server does not reuse, and
        -- pass nothing of what follows.
        log(WARN, "edge: the origin sent a ", ngx.status, " (nginx 1.22 cannot relay"
            .. " 1xx responses): 502")
        ngx.status = 502
        header["Content-Length"] = 0
        header["Connection"] = "close"
        header["X-Accel-Expires"] = 0
        ngx.ctx.discard_body = true
        return
    end
    -- RFC 9110 §7.6.1: the fields an origin names in Connection are hop-by-hop,
    -- never stored or passed on (nginx drops Connection itself, not them)
    local connection = var.upstream_http_connection
    if connection then
        for name in gmatch(connection, "[^,%s]+") do
            local token = lower(name)
            if token ~= "close" and token ~= "keep-alive" then
                header[name] = nil
            end
        end
    end
    local h = get_headers(0)
    local t = now()
    -- a read from the bucket: its headers become the origin's, and the request's
    -- Authorization is the edge's signature, not the client's
    local object = var.cdn_s3_object
    local authorization
    if object and object ~= "" then
        authorization = var.cdn_client_auth == "1"
        local out, why = bucket.response(ngx.status, h, object)
        if not out then
            log(WARN, "edge: ", object, " is not an asset (", why, "): 404")
            ngx.status = 404
            header["Content-Length"] = 0
            ngx.ctx.discard_body = true
            out = bucket.response(404, h, object)
        end
        h = out
    else
        authorization = var.http_authorization ~= nil
    end
    local input = {
        status = ngx.status,
        now = t,
        authorization = authorization,
        -- (cache.storeSetCookie: such a response is stored like any other)
        set_cookie = h["set-cookie"] ~= nil and not settings.storeSetCookie,
        slice = var.http_x_cdn_slice ~= nil,
        cache_control = field(h, "cache-control", true),
        cdn_cache_control = field(h, "cdn-cache-control", true),
        surrogate_control = field(h, "surrogate-control", true),
        -- (hidden by nginx.conf, to be put back last)
        expires = var.upstream_http_expires,
        date = field(h, "date"),
        -- every Age line (a list is not a valid Age: freshness.lua)
        age = h["age"],
        vary = field(h, "vary", true),
        parse_http_time = parse_http_time,
        grace = settings.grace,
        store_5xx = settings.store5xx,
        max_5xx_ttl = settings.max5xxTtl,
        min_swr = settings.minStaleWhileRevalidate,
    }
    local ok, d = pcall(freshness.decide, input)
    -- A 5xx never replaces a stored copy that may still be served: on a
    -- revalidation it is dropped (nginx.conf), and the one request that
    -- refreshes a soft-purged object (a cache bypass) does not store it.
    if ok and d.store and input.status >= 500
            and var.http_x_cdn_cache_state == "BYPASS" then
        d = { store = false, ttl = 0, age = 0, reason = "5xx-on-refresh" }
    end
    local cache_key = var.cdn_fetch_key
    local validator = var.cdn_fetch_validator
    if ok and not d.store and d.reason == "no-freshness" and ngx.status == 304
            and cache_key ~= "" and validator ~= "" then
        -- RFC 9111 §4.3.4: a 304 that says nothing of freshness leaves the
        -- stored response's (its max-age then counts from the 304's Date);
        -- without this the refreshed entry could not be stored, and every
        -- request after it would go back to the origin
        local stored = revalidated.freshness_fields(cache_key, validator)
        if stored then
            input.cache_control, input.cdn_cache_control = stored[1], stored[2]
            input.surrogate_control, input.expires = stored[3], stored[4]
            ok, d = pcall(freshness.decide, input)
        end
    end
    if not ok then
        -- a response the rules cannot read is passed on, never stored
        log(WARN, "edge: freshness failed, not storing: ", d)
        d = { store = false, ttl = 0, age = 0 }
    end
    local expires_header = var.upstream_http_expires
    header["Age"] = nil
    -- this hop's own Server line would be stored and parsed on every hit
    header["Server"] = nil
    -- (passed on by default: it speaks to every CDN on the way, RFC 9213)
    if not settings.forwardCdnCacheControl then
        header["CDN-Cache-Control"] = nil
    end
    header["Surrogate-Control"] = nil
    -- Surrogate-Key is indexed here (tag purges) and not stored: a HIT would
    -- parse the line only to hide it, some 20 instructions a character on
    -- every HIT. (HEAD misses are fetched as GET.)
    local surrogate_key = field(h, "surrogate-key", true)
    if surrogate_key then
        header["Surrogate-Key"] = nil
        local method = var.request_method
        if method == "GET" or method == "HEAD" then
            local path = key.path(var.request_uri)
            if path then
                tags.record(path, surrogate_key, ngx.req.start_time())
            end
        end
    end
    local ttl = d.revalidate and -1 or d.ttl
    -- Cut off from the purge stream, the edge cannot promise a purge will reach
    -- it, so nothing it stores now stays fresh longer than the cap.
    local cap = settings.busDownMaxTtl
    if ttl > cap and invalidation.disconnected_for() > 0 then
        ttl = cap
    end
    local meta_record = meta_value(t - d.age, t + ttl, d.store,
        h["cache-status"] ~= nil, field(h, "content-length"), ngx_now(),
        field(h, "cache-control", true))
    header["X-Cdn-Meta"] = meta_record
    -- what the stored copy is now (see revalidated.lua): a 304 to a
    -- revalidation renews it; a newly stored response starts without a record
    if d.store and cache_key ~= "" and ngx.status ~= 304 then
        revalidated.store_status(cache_key, ngx.status, settings.generationTtl)
    end
    if d.store and cache_key ~= "" then
        if ngx.status == 304 then
            if validator ~= "" then
                -- (the 304's Expires is hidden by nginx.conf: renewed all the same)
                h["expires"] = expires_header
                revalidated.record(cache_key, validator, meta_record,
                                   max(ttl, 0) + max(d.swr, d.sie) + 1, h,
                                   settings.storeSetCookie)
            end
        else
            local stored = revalidated.validator(field(h, "etag"),
                                                 field(h, "last-modified"))
            if stored then
                revalidated.forget(cache_key, stored)
                revalidated.keep_freshness_fields(cache_key, stored, {
                    input.cache_control, input.cdn_cache_control,
                    input.surrogate_control, expires_header,
                }, settings.generationTtl)
            end
        end
    end
    if not d.store then
        header["Cache-Control"] = nil
        header["X-Accel-Expires"] = 0
    else
        -- Order matters to nginx: it reads stale-* from a Cache-Control that
        -- comes before X-Accel-Expires, and ignores an Expires that comes after.
        -- As short as it can be: nginx scans the stored Cache-Control seven
        -- times on every HIT (callgrind: ~60 instructions a character). Without
        -- either directive both are 0; but nginx takes stale-while-revalidate
        -- as stale-if-error too unless the latter is given, so with the former
        -- the latter is always written.
        local swr, sie = d.swr, d.sie
        header["Cache-Control"] = swr > 0
            and ("stale-while-revalidate=" .. swr .. ",stale-if-error=" .. sie)
            or sie > 0 and ("stale-if-error=" .. sie)
            or nil
        -- "@1" stores the response already expired: revalidated before reuse
        header["X-Accel-Expires"] = ttl > 0 and ttl or "@1"
    end
    -- after X-Accel-Expires (see nginx.conf): the public server then ignores it
    -- for freshness, which this filter decided, and stores it for browsers
    header["Expires"] = expires_header
end


-- The header filter's companion: the body of a response it replaced is not
-- passed on (a bucket object that is not an asset: its 404 has no body; an
-- origin's 1xx: its 502 has none).
function _M.body_filter()
    if ngx.ctx.discard_body then
        ngx.arg[1] = ""
    end
end


-- The bucket refused a signed read or failed. Logged, then the connection is
-- dropped so the public server treats it as an upstream error (stale-if-error
-- may serve the stored copy; nothing is stored).
function _M.bucket_refused()
    bucket.log_refusal(var.cdn_s3_object)
    return ngx_exit(444)
end


-- The external origin that serves `host` and `path`, or nil for the CDN's own
-- origin. Hosts match exactly, path prefixes by the longest, "*" catches the
-- rest (settings.origins is in that order).
function _M.route(host, path)
    local routes = settings.origins
    for i = 1, #routes do
        local r = routes[i]
        local m = r.match
        if m == "*" or m == host
           or (byte(m, 1) == 47 and sub(path, 1, #m) == m) then -- "/"
            return r
        end
    end
    return nil
end


-- set_by_lua: the upstream for this request. Hosts match exactly, path
-- prefixes by the longest, "*" catches the rest; what no external origin
-- claims goes to the bucket when it is a raw asset read with S3 storage
-- (setting $cdn_s3_object), else to the CDN's own origin. Also sets
-- $cdn_fetch_uri, the raw path with the query as keyed, and marks a GET's path
-- as possibly stored before it leaves (see stored.lua).
function _M.upstream()
    -- A GET with a body ("" makes nginx.conf answer 400; HEAD misses arrive as GET).
    if var.request_method == "GET"
       and (var.http_transfer_encoding or (tonumber(var.content_length) or 0) > 0) then
        return ""
    end
    -- (read before a bucket read drops the request's headers)
    local cache_key = var.http_x_cdn_key
    if cache_key then
        var.cdn_fetch_key = cache_key
        -- a revalidation: the stored copy's validator, as nginx sent it
        if var.http_x_cdn_cache_state == "EXPIRED" then
            var.cdn_fetch_validator = revalidated.validator(
                var.http_if_none_match, var.http_if_modified_since) or ""
            -- Its failures are dropped so the stored copy is served within its
            -- stale-if-error (nginx.conf, @revalidate), unless the stored copy
            -- is an error itself: then the origin's 5xx is passed on, and stored
            -- again, rather than the edge's own 502.
            if not revalidated.stored_error(cache_key) then
                var.cdn_revalidate = "1"
            end
        end
    end
    local request_uri = var.request_uri
    local q = find(request_uri, "?", 1, true)
    -- (slashes merged as the key merges them: the origin is asked for what was keyed)
    local raw_path = gsub(q and sub(request_uri, 1, q - 1) or request_uri, "//+", "/")
    local path = key.path(request_uri)
    -- (HEAD misses are fetched as GET)
    if path and var.request_method == "GET" then
        stored_paths.fetching(path)
    end
    local route = _M.route(key.host(var.http_host), var.uri)
    -- the CDN's own origin reads only the image parameters (images.lua; the
    -- public server already refused what they refuse)
    local query
    if path and downloads.enabled() and downloads.protected(path) then
        -- a download token never reaches any origin
        query = ""
    elseif route or not path or not images.enabled() then
        query = key.query(var.args)
    else
        -- (checked by the public server's key lookup already: only made canonical
        -- here, so a signature expiring meanwhile cannot turn into "no parameters")
        query = images.query(path, var.args, true) or ""
    end
    var.cdn_fetch_uri = raw_path .. (query ~= "" and "?" .. query or "")
    if route then
        var.cdn_upstream_sni = route.sni
        return route.upstream
    end
    -- (slices come from the origin: a bucket read is of the whole object, and
    -- image variants are made by the origin)
    local object = query == "" and not var.http_x_cdn_slice
                   and bucket.claim(var.request_method, raw_path)
    if object then
        var.cdn_client_auth = var.http_authorization and "1" or ""
        var.cdn_s3_object = object
        return bucket.prepare(object)
    end
    return DEFAULT_UPSTREAM
end


return _M
