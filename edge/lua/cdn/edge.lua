-- The edge's phase handlers. nginx.conf calls exactly one function per phase;
-- each concern lives in its own module under cdn/edge/.
--
-- Two server blocks run this code. The public one looks up the cache
-- (`cache_key`, `header_filter`); on a miss it fetches through an internal hop
-- (a unix socket) whose `fetch_header_filter` decides freshness before nginx
-- stores the response. The hit path is kept to one set_by_lua and one header
-- filter: an access_by_lua handler alone cost ~10% of a 1 KiB hit here.
local settings_loader = require "cdn.settings"
local key = require "cdn.key"
local metrics_lib = require "cdn.metrics"
local memo = require "cdn.memo"
local memo_get, memo_set = memo.get, memo.set
local generations = require "cdn.edge.generations"
local tags = require "cdn.edge.tags"
local invalidation = require "cdn.edge.invalidation"
local cache_status = require "cdn.edge.cache_status"
local freshness = require "cdn.edge.freshness"
local stats = require "cdn.edge.stats"
local stored_paths = require "cdn.edge.stored"
local disk = require "cdn.edge.disk"
local bucket = require "cdn.edge.bucket"
local revalidated = require "cdn.edge.revalidated"

local var = ngx.var
local header = ngx.header
local ngx_exit = ngx.exit
local say = ngx.say
local now = ngx.time
local ngx_now = ngx.now
local start_time = ngx.req.start_time
local format = string.format
local parse_http_time = ngx.parse_http_time
local get_headers = ngx.resp.get_headers
local set_request_header = ngx.req.set_header
local clear_request_header = ngx.req.clear_header
local match = string.match
local log = ngx.log
local WARN = ngx.WARN
local tonumber = tonumber
local max = math.max
local sub = string.sub
local find = string.find
local gsub = string.gsub
local byte = string.byte
local concat = table.concat
local type = type

local _M = { _VERSION = "0.2.0" }

local settings
local metrics
local admin_token_digest
-- "<edge>; hit; ttl=" and "<edge>; hit", built once
local hit_ttl, hit_no_ttl, collapsed_ttl

-- raw Accept-Encoding -> class, per worker (cdn.memo: at most 1,000 values, junk ones
-- cycle out)
local ae_classes
local AE_CLASS_CACHE_SIZE = 500

-- The hit path reads one nginx variable per phase and looks the rest up in
-- per-worker memos: in LuaJIT's interpreter (a handler called from C is never
-- traced) each ngx.var read costs about as much as nginx's whole cache lookup.
--
-- $cdn_request -> a computed key entry (see request_entry):
--   "<1 if Range is ignored, else 0><Accept-Encoding>\n<Accept>\n<Host><URI>"
local requests_seen
local seq, seq_tick
local KEY_CACHE_SIZE = 20000
-- Longer signatures are keyed every time: 20,000 URIs of 16 KiB would cost a
-- worker hundreds of MB (the memo counts entries, not bytes).
local KEY_CACHE_MAX_ID = 512
-- $cdn_response of reused responses -> its parsed fields (see response_fields):
--   "<cache status> <status> <X-Cdn-Meta>"
local responses_seen
local RESPONSE_CACHE_SIZE = 20000
-- meta recorded by a revalidation -> its times and Cache-Control (see renewed)
local renewals_seen
local RENEWAL_CACHE_SIZE = 5000

-- A response that went to the upstream (and may have been stored).
local FETCHED = { MISS = true, EXPIRED = true, REVALIDATED = true, BYPASS = true }
local UNSAFE_METHODS = { POST = true, PUT = true, DELETE = true, PATCH = true }
local DEFAULT_UPSTREAM = "http://origin"


function _M.init(settings_path)
    settings = settings_loader.load(settings_path)
    if settings.adminTokenFile then
        -- kept as a digest: compared with a digest of what a request presents
        admin_token_digest = ngx.sha1_bin(settings_loader.read_secret(settings.adminTokenFile))
    end
    if settings.redis.passwordFile then
        settings.redis_password = settings_loader.read_secret(settings.redis.passwordFile)
    end
    if settings.bucket then
        bucket.init(settings.bucket)
    end
    generations.init()
end


function _M.init_worker()
    hit_ttl, hit_no_ttl = settings.id .. "; hit; ttl=", settings.id .. "; hit"
    collapsed_ttl = settings.id .. "; fwd=uri-miss; collapsed; ttl="
    requests_seen = memo.new(KEY_CACHE_SIZE)
    ae_classes = memo.new(AE_CLASS_CACHE_SIZE)
    responses_seen = memo.new(RESPONSE_CACHE_SIZE)
    renewals_seen = memo.new(RENEWAL_CACHE_SIZE)
    local err
    metrics, err = metrics_lib.new("cdn_metrics")
    if not metrics then
        log(WARN, "edge: metrics disabled: ", err)
    else
        metrics:counter("cdn_edge_requests_total",
            "Requests served, by cache status and status class",
            { "cache_status", "status_class" })
        metrics:counter("cdn_edge_response_bytes_total",
            "Body bytes sent to clients (from Content-Length), by cache status",
            { "cache_status" })
        metrics:histogram("cdn_edge_upstream_header_seconds",
            "Time until the upstream's response headers arrived, on misses")
        metrics:gauge("cdn_edge_invalidation_connected",
            "1 while the edge follows the purge stream")
        metrics:gauge("cdn_edge_invalidation_lag_seconds",
            "While connected: age of the last purge when applied; while cut off"
            .. " from the stream: seconds since it last heard from it")
        metrics:counter("cdn_edge_collapsed_total",
            "Requests that waited for another request's fetch of the same object"
            .. " and were answered with it (Cache-Status: collapsed)")
        -- exported from the start (at 0), not from the first collapse on
        metrics:inc("cdn_edge_collapsed_total", 0)
        metrics:counter("cdn_edge_purges_applied_total",
            "Purge messages applied from the stream")
        metrics:gauge("cdn_edge_cache_filesystem_size_bytes",
            "Size of the filesystem that holds the disk cache")
        metrics:gauge("cdn_edge_cache_filesystem_avail_bytes",
            "Bytes still available on the filesystem that holds the disk cache")
        stats.start(metrics)
    end
    invalidation.start(settings)
end


-- A variant's name for soft purges: the Accept-Encoding class, and the image
-- Accept class when there is one.
local function variant_of(ae_class, image_class)
    return image_class and (ae_class .. "|" .. image_class) or ae_class
end


-- What the negotiation headers become, so Vary on them stores at most a few
-- variants whatever clients send: Accept-Encoding -> br|gzip|identity, an
-- image Accept -> avif|webp|anything.
-- Returns the variant, and the new Accept-Encoding and Accept values (nil when
-- the header stays as it is).
local function negotiation()
    local ae = var.http_accept_encoding
    local class = memo_get(ae_classes, ae or "")
    if not class then
        class = key.accept_encoding(ae)
        memo_set(ae_classes, ae or "", class)
    end
    -- no header at all already means identity: leave it (most bots, no cost)
    local ae_rewrite = (ae and ae ~= class) and class or nil
    local accept = var.http_accept
    if accept and byte(accept, 1) == 105 then -- "i"mage/...
        local image = key.image_accept(accept)
        if image then
            return variant_of(class, image), ae_rewrite,
                   image ~= accept and image or nil
        end
    end
    return class, ae_rewrite, nil
end


-- Everything the key of a request signature needs, computed once per purge
-- sequence: { seq, key, soft-purged path or nil, variant, new Accept-Encoding,
-- new Accept, drop Range }; or nil and the reason the target is refused.
local function request_entry(request)
    local path, err = key.path(var.request_uri)
    if not path then
        return nil, err
    end
    local variant, ae_rewrite, accept_rewrite = negotiation()
    return {
        seq,
        key.host(var.http_host or "") .. path .. "?" .. key.query(var.args)
            .. "#" .. generations.suffix(path),
        generations.soft(path) and path or nil,
        variant,
        ae_rewrite,
        accept_rewrite,
        -- RFC 9110 §14.2: an unparsable Range is ignored (200 with the whole
        -- body); nginx would answer 416 for it ($cdn_range_ignored).
        byte(request, 1) == 49, -- "1"
    }
end


-- Soft-purged paths only: whether this request refreshes `path` for its
-- variant. One that bypasses the cache for its cookies would not store the
-- response, so it never takes the claim from a request that would.
local function claim_refresh(path, variant)
    local bypass = var.cdn_cookie_bypass -- nil: no bypass cookies configured
    return (not bypass or bypass == "") and generations.claim_refresh(path, variant)
end


-- set_by_lua: the cache key (host, decoded path, filtered query, invalidation
-- generations), or "" when the request target tries traversal tricks (nginx
-- then answers 400 with $cdn_reject as the reason). Normalises the request's
-- negotiation headers, which nginx's Vary handling reads.
function _M.cache_key()
    local request = var.cdn_request
    -- The purge sequence is read from shared memory once per event-loop tick
    -- (ngx.now() only moves between ticks), not once per request.
    local tick = ngx_now()
    if tick ~= seq_tick then
        seq_tick, seq = tick, generations.seq()
    end
    local entry = memo_get(requests_seen, request)
    if not entry or entry[1] ~= seq then
        local err
        entry, err = request_entry(request)
        if not entry then
            var.cdn_reject = err
            return ""
        end
        -- (no SEQ for an instant while a full zone is being reset: key, don't keep)
        if seq and #request <= KEY_CACHE_MAX_ID then
            memo_set(requests_seen, request, entry)
        end
    end
    if entry[5] then
        set_request_header("Accept-Encoding", entry[5])
    end
    if entry[6] then
        set_request_header("Accept", entry[6])
    end
    if entry[7] then
        clear_request_header("Range")
    end
    -- soft-purged path: each variant is refreshed by one request
    if entry[3] and claim_refresh(entry[3], entry[4]) then
        var.cdn_refresh = "1"
    end
    return entry[2]
end


-- X-Cdn-Meta carries what the public server needs on every response, so the
-- hit path reads one upstream header instead of several (each read scans the
-- stored headers):
--   "<born> <expires> <stored><cs> <size>@<fetched>|<cache-control>"
-- born: epoch second the response was generated (receipt minus initial age);
-- expires: epoch second it stops being fresh (ten digits each until 2286);
-- stored: "s" or "n"; cs: "c" when the upstream sent its own Cache-Status;
-- size: Content-Length or "-"; fetched: when this edge received it (epoch
-- seconds, in ms; responses stored before it was added lack "@<fetched>");
-- then the origin's Cache-Control for browsers (after "|", since nginx trims a
-- trailing space off an empty one).
local function meta_value(born, expires, stored, upstream_cs, size, fetched, cc)
    if type(cc) == "table" then
        cc = concat(cc, ", ")
    end
    return born .. " " .. expires .. " " .. (stored and "s" or "n")
           .. (upstream_cs and "c" or "-") .. " " .. (size or "-")
           .. format("@%.3f|", fetched) .. (cc or "")
end


-- Splits X-Cdn-Meta: born, expires, stored, upstream_cs, size, cache_control,
-- fetched (nil in responses stored without it).
local function meta_fields(meta)
    local bar = find(meta, "|", 26, true)
    if not bar then
        return nil
    end
    local at = find(meta, "@", 26, true)
    if at and at > bar then
        at = nil
    end
    return tonumber(sub(meta, 1, 10)), tonumber(sub(meta, 12, 21)),
           byte(meta, 23) == 115, -- "s"
           byte(meta, 24) == 99,  -- "c"
           tonumber(sub(meta, 26, (at or bar) - 1)), sub(meta, bar + 1),
           at and tonumber(sub(meta, at + 1, bar - 1))
end


local function on_fetched(path, stored)
    if path then
        tags.record(path, var.upstream_http_surrogate_key, ngx.req.start_time())
        if stored then
            stored_paths.record(path)
        end
    end
    local t = tonumber(var.upstream_header_time)
    if t and metrics then
        metrics:observe("cdn_edge_upstream_header_seconds", t)
    end
end


local REUSED = { HIT = true, STALE = true, UPDATING = true }
-- Seconds after a fetch in which a HIT may still be a request that waited for it
-- (proxy_cache_lock_timeout is 10 s; later ones are not worth a clock read).
local COLLAPSE_WINDOW = 12


-- A soft-purge refresh (BYPASS) was stored: that variant is done.
-- (the request's negotiation headers were already normalised to their classes)
local function refreshed(path)
    if path then
        local accept = var.http_accept
        generations.refreshed(path, variant_of(var.http_accept_encoding or "identity",
                                               accept and key.image_accept(accept)))
    end
end


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


-- RFC 9111 §4.4: a successful unsafe request invalidates its URL and those in
-- Location and Content-Location on the same host. Only paths that may have a
-- stored response cost a generation counter (stored.lua).
local function invalidate_written(path)
    invalidate_if_stored(path)
    invalidate_if_stored(same_host_path(header["Location"]))
    invalidate_if_stored(same_host_path(header["Content-Location"]))
end


local function restore_cache_control(cc)
    if cc ~= "" then
        header["Cache-Control"] = cc
    end
end


-- Body bytes a response of status `code` sends, for the counters: `size`
-- (the stored Content-Length) except for a 304, which has no body. nil when
-- the log phase counts them instead (`sized_at_log`: HEAD, Range and debug
-- requests, whose bodies nginx cuts after this filter ran).
local function body_bytes(code, size, sized_at_log)
    if sized_at_log then
        return nil
    end
    return code == 304 and 0 or size
end


-- $cdn_response split: cache status ("" when nginx did not look up the cache),
-- status, and the X-Cdn-Meta fields (nil without one).
local function response_fields(response)
    local cache_status, code, meta = match(response, "^(%S*) (%d+) (.*)$")
    local r = { cache_status = cache_status ~= "" and cache_status or nil,
                code = tonumber(code) }
    if meta and meta ~= "" then
        r.born, r.expires, r.stored, r.upstream_cs, r.size, r.cc, r.fetched = meta_fields(meta)
    end
    return r
end


-- The times and Cache-Control that speak for a stored response whose stored
-- meta ran out: those of its last 304 revalidation when there was one (see
-- revalidated.lua), else the stored ones. cc is nil when the 304 sent none
-- (the stored one stands).
local function renewed(stored)
    local validator = revalidated.validator(var.upstream_http_etag,
                                            var.upstream_http_last_modified)
    local meta = validator and revalidated.meta(
        var.cdn_cache_key .. (var.slice_range or ""), validator)
    if not meta then
        return stored
    end
    local f = memo_get(renewals_seen, meta)
    if not f then
        local born, expires, _, _, _, cc = meta_fields(meta)
        if not born then
            return stored
        end
        f = { born = born, expires = expires, cc = cc ~= "" and cc or nil }
        memo_set(renewals_seen, meta, f)
    end
    return f
end


-- Public header filter: Cache-Status (RFC 9211), Age, the origin's
-- Cache-Control, counters. A reused response costs one variable read and a
-- memo lookup; its Age and Cache-Status strings are rebuilt once a second.
-- `sized_at_log` is set by the locations whose sent bytes are counted in the
-- log phase (log_sent_bytes).
function _M.header_filter(sized_at_log)
    local response = var.cdn_response
    local r = memo_get(responses_seen, response)
    if not r then
        r = response_fields(response)
        if REUSED[r.cache_status] then
            memo_set(responses_seen, response, r)
        end
    end
    local status = r.cache_status
    -- after a revalidation the stored meta is the old one (nginx does not
    -- rewrite stored headers), so only plain reuse reports Age and ttl
    if REUSED[status] then
        local member
        if r.born then
            local t = now()
            -- past the stored expiry: a revalidation may have renewed it
            local times = r.expires < t and renewed(r) or r
            if times.t ~= t then
                times.t, times.age = t, t - times.born
                times.ttl_member = hit_ttl .. (times.expires - t)
            end
            if times.expires >= t or status ~= "HIT" then
                header["Age"] = times.age
                member = times.ttl_member
                if status == "HIT" and t - (r.fetched or 0) < COLLAPSE_WINDOW
                        and start_time() < r.fetched then
                    -- begun before its response was fetched: it waited on the
                    -- cache lock for another request's fetch (RFC 9211)
                    member = collapsed_ttl .. (times.expires - t)
                    stats.count_collapsed()
                end
            else
                -- A fresh HIT past every expiry we know of: revalidated, but the
                -- record of it is gone (evicted), so neither Age nor ttl is claimed.
                member = hit_no_ttl
            end
            restore_cache_control(times.cc or r.cc)
        else
            member = hit_ttl .. 0
        end
        header["Cache-Status"] = r.upstream_cs
            and cache_status.header(var.upstream_http_cache_status, member)
            or member
        local code = r.code
        stats.count(status, code, (code == 200 and not sized_at_log) and r.size
                                  or body_bytes(code, r.size, sized_at_log))
        return
    end

    local stored, size = r.stored, r.size
    -- a revalidated response is sent with what its 304 said
    local times = status == "REVALIDATED" and r.born and renewed(r) or r
    local born, cc = times.born, times.cc or r.cc
    local upstream_status = var.upstream_status
    if not status and not upstream_status then
        return -- generated here (400, 405, an nginx error page): no Cache-Status
    end
    if cc then
        restore_cache_control(cc)
        local age = now() - born
        if age > 0 then
            header["Age"] = age -- the age the origin reported, passed on
        end
    end
    local method = var.request_method
    local path = (FETCHED[status] or UNSAFE_METHODS[method])
                 and key.path(var.request_uri)
    if FETCHED[status] then
        on_fetched(path, stored)
        -- (other bypasses, for cookies, store nothing)
        if status == "BYPASS" and stored and var.cdn_refresh == "1" then
            refreshed(path)
        end
    end
    header["Cache-Status"] = cache_status.header(var.upstream_http_cache_status,
        cache_status.value(settings.id, status, upstream_status, nil,
                           stored and status == "MISS"))

    if UNSAFE_METHODS[method] and path then
        local code = ngx.status
        if code >= 200 and code < 400 then
            invalidate_written(path)
            -- this worker's next request re-reads the purge sequence even
            -- within this millisecond (read-your-writes for the client)
            seq_tick = nil
        end
    end
    local code = ngx.status
    stats.count(status or "NONE", code, body_bytes(code, size, sized_at_log))
end


-- Header filter of the sliced locations (cache.slice): nginx fetches every
-- slice after the first in a subrequest that shares the request's variables;
-- only the response the client gets is described and counted.
function _M.slice_header_filter()
    if ngx.is_subrequest then
        return
    end
    _M.header_filter(true)
end


-- Log phase of the locations that serve HEAD, Range and debug requests: the
-- body bytes actually sent (the range, nothing for HEAD), which the header
-- filter cannot know (nginx cuts ranges after it). Plain GETs never get here.
function _M.log_sent_bytes()
    local status = var.upstream_cache_status
    if status or var.upstream_status then -- not generated here
        stats.count_bytes(status or "NONE", tonumber(var.body_bytes_sent) or 0)
    end
end


-- Header filter of the debug location (requests with X-Cdn-Debug): the usual
-- headers, plus the cache key, the negotiated variant and the purge tags when
-- X-Cdn-Debug carries the admin token.
function _M.debug_header_filter()
    _M.header_filter(true)
    local given = var.http_x_cdn_debug
    if not admin_token_digest or ngx.sha1_bin(given) ~= admin_token_digest then
        header["X-Cdn-Debug"] = "denied: X-Cdn-Debug must carry the admin token"
        return
    end
    header["X-Cdn-Debug-Key"] = var.cdn_cache_key
    header["X-Cdn-Debug-Variant"] = "accept-encoding="
        .. (var.http_accept_encoding or "identity") .. "; accept="
        .. (var.http_accept or "*/*")
    header["X-Cdn-Debug-Tags"] = var.upstream_http_surrogate_key or ""
end


-- Internal hop header filter: freshness decided once, before nginx stores the
-- response. What browsers must see is kept in X-Cdn-* fields that nginx does not
-- interpret; the public server restores them.
-- A field as one string: list fields joined, single-value fields by their
-- first line (origins behind middleware send duplicates).
local function field(h, name, list)
    local v = h[name]
    if type(v) ~= "table" then
        return v
    end
    return list and concat(v, ", ") or v[1]
end


-- Epoch seconds for X-Cdn-Meta: ten digits whatever the origin claims.
local MAX_META_TIME = 9999999999


local function clamp(n)
    return n < 0 and 0 or (n > MAX_META_TIME and MAX_META_TIME or n)
end


function _M.fetch_header_filter()
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
    local ok, d = pcall(freshness.decide, {
        status = ngx.status,
        now = t,
        authorization = authorization,
        set_cookie = h["set-cookie"] ~= nil,
        slice = var.http_x_cdn_slice ~= nil,
        cache_control = field(h, "cache-control", true),
        cdn_cache_control = field(h, "cdn-cache-control", true),
        surrogate_control = field(h, "surrogate-control", true),
        expires = field(h, "expires"),
        date = field(h, "date"),
        age = field(h, "age"),
        vary = field(h, "vary", true),
        parse_http_time = parse_http_time,
        grace = settings.grace,
    })
    if not ok then
        -- a response the rules cannot read is passed on, never stored
        log(WARN, "edge: freshness failed, not storing: ", d)
        d = { store = false, ttl = 0, age = 0 }
    end
    local expires_header = h["expires"]
    header["Expires"] = nil
    header["Age"] = nil
    -- this hop's own Server line would be stored and parsed on every hit
    header["Server"] = nil
    header["CDN-Cache-Control"] = nil
    header["Surrogate-Control"] = nil
    local ttl = d.revalidate and -1 or d.ttl
    -- Cut off from the purge stream, the edge cannot promise a purge will reach
    -- it, so nothing it stores now stays fresh longer than the cap.
    local cap = settings.busDownMaxTtl
    if ttl > cap and invalidation.disconnected_for() > 0 then
        ttl = cap
    end
    local meta = meta_value(clamp(t - d.age), clamp(t + ttl), d.store,
        h["cache-status"] ~= nil, field(h, "content-length"), ngx_now(),
        field(h, "cache-control", true))
    header["X-Cdn-Meta"] = meta
    -- what the stored copy is now (see revalidated.lua): a 304 to a
    -- revalidation renews it; a newly stored response starts without a record
    local cache_key = var.cdn_fetch_key
    if d.store and cache_key ~= "" then
        if ngx.status == 304 then
            local validator = var.cdn_fetch_validator
            if validator ~= "" then
                revalidated.record(cache_key, validator, meta,
                                   max(ttl, 0) + max(d.swr, d.sie) + 1)
            end
        else
            local validator = revalidated.validator(field(h, "etag"),
                                                    field(h, "last-modified"))
            if validator then
                revalidated.forget(cache_key, validator)
            end
        end
    end
    if not d.store then
        header["Cache-Control"] = nil
        header["X-Accel-Expires"] = 0
    else
        -- Order matters to nginx: it reads stale-* from a Cache-Control that
        -- comes before X-Accel-Expires, and ignores an Expires that comes after.
        header["Cache-Control"] = "stale-while-revalidate=" .. d.swr
                                  .. ", stale-if-error=" .. d.sie
        -- "@1" stores the response already expired: revalidated before reuse
        header["X-Accel-Expires"] = ttl > 0 and ttl or "@1"
    end
    header["Expires"] = expires_header
end


-- Internal hop header filter's companion: the body of a bucket object that
-- turned out not to be an asset is not passed on (its 404 has no body).
function _M.fetch_body_filter()
    if ngx.ctx.discard_body then
        ngx.arg[1] = ""
    end
end


-- Internal hop: the bucket refused a signed read or failed. Logged, then the
-- connection is dropped so the public server treats it as an upstream error
-- (stale-if-error may serve the stored copy; nothing is stored).
function _M.bucket_refused()
    bucket.log_refusal(var.cdn_s3_object)
    return ngx_exit(444)
end


-- Internal hop (set_by_lua): the upstream for this request. Hosts match
-- exactly, path prefixes by the longest, "*" catches the rest; what no
-- external origin claims goes to the bucket when it is a raw asset read with
-- S3 storage (setting $cdn_s3_object), else to the CDN's own origin. Also sets
-- $cdn_fetch_uri, the raw path with the query as keyed, and marks a GET's path
-- as possibly stored before it leaves (see stored.lua).
function _M.upstream()
    -- (read before a bucket read drops the request's headers)
    local cache_key = var.http_x_cdn_key
    if cache_key then
        var.cdn_fetch_key = cache_key
        -- a revalidation: the stored copy's validator, as nginx sent it
        if var.http_x_cdn_cache_state == "EXPIRED" then
            var.cdn_fetch_validator = revalidated.validator(
                var.http_if_none_match, var.http_if_modified_since) or ""
        end
    end
    local request_uri = var.request_uri
    local q = find(request_uri, "?", 1, true)
    local raw_path = q and sub(request_uri, 1, q - 1) or request_uri
    local query = key.query(var.args)
    var.cdn_fetch_uri = raw_path .. (query ~= "" and "?" .. query or "")
    -- (HEAD misses are fetched as GET)
    if var.request_method == "GET" then
        local path = key.path(request_uri)
        if path then
            stored_paths.fetching(path)
        end
    end
    local routes = settings.origins
    if #routes > 0 then
        local host = key.host(var.http_host)
        local uri = var.uri
        for i = 1, #routes do
            local r = routes[i]
            local m = r.match
            if m == "*" or m == host
               or (byte(m, 1) == 47 and sub(uri, 1, #m) == m) then -- "/"
                var.cdn_upstream_sni = r.sni
                return r.upstream
            end
        end
    end
    -- (slices come from the origin: a bucket read is of the whole object)
    local object = not var.http_x_cdn_slice and bucket.claim(var.request_method, raw_path)
    if object then
        var.cdn_client_auth = var.http_authorization and "1" or ""
        var.cdn_s3_object = object
        return bucket.prepare(object)
    end
    return DEFAULT_UPSTREAM
end


function _M.serve_metrics()
    if not metrics then
        return ngx_exit(503)
    end
    stats.flush()
    local state = ngx.shared.cdn_state
    metrics:set("cdn_edge_invalidation_connected", state:get("connected") or 0)
    local cut_off = invalidation.disconnected_for()
    metrics:set("cdn_edge_invalidation_lag_seconds",
                cut_off > 0 and cut_off or (state:get("lag_seconds") or 0))
    metrics:set("cdn_edge_purges_applied_total", state:get("applied_total") or 0)
    local size, avail = disk.usage(ngx.config.prefix() .. "cache")
    if size then
        metrics:set("cdn_edge_cache_filesystem_size_bytes", size)
        metrics:set("cdn_edge_cache_filesystem_avail_bytes", avail)
    end
    metrics:serve()
end


function _M.serve_health()
    header["Content-Type"] = "application/json"
    say('{"status":"ok","edge":"', settings.id, '","region":"', settings.region,
        '","invalidation":', (ngx.shared.cdn_state:get("connected") or 0) == 1
        and "true" or "false", '}')
end


return _M
