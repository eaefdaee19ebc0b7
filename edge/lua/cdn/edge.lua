-- The edge's public server: the cache lookup, which every request takes and a
-- hit never leaves. nginx.conf calls exactly one module function per phase;
-- here `cache_key` (set_by_lua) and `header_filter` (Cache-Status, Age, the
-- origin's Cache-Control, counters), with `slice_header_filter` and
-- `log_sent_bytes` for the locations whose sent bytes are counted in the log
-- phase; and `init`/`init_worker`, which hand the settings (and the metrics)
-- to the modules that need them (no globals).
--
-- Each concern lives in its own module under cdn/edge/, the other request
-- paths too:
--   fetch.lua     the internal hop (a unix socket) that misses and
--                 revalidations go through: which upstream, and freshness
--                 decided before nginx stores the response
--   writes.lua    invalidation by unsafe methods (RFC 9111 §4.4), called from
--                 header_filter for those methods only
--   debug.lua     the header filter of requests with X-Cdn-Debug
--   internal.lua  the internal listener: health and metrics
--   meta.lua      the X-Cdn-Meta record that fetch.lua writes and this reads
--
-- The hit path is kept to one set_by_lua and one header filter (an
-- access_by_lua handler alone cost ~10% of a 1 KiB hit here), and reaches the
-- other modules only through locals bound when this one loads: no require and
-- no extra call per request.
local settings_loader = require "cdn.settings"
local key = require "cdn.key"
local memo = require "cdn.memo"
local memo_get, memo_set = memo.get, memo.set
local generations = require "cdn.edge.generations"
local invalidation = require "cdn.edge.invalidation"
local cache_status = require "cdn.edge.cache_status"
local stats = require "cdn.edge.stats"
local stored_paths = require "cdn.edge.stored"
local revalidated = require "cdn.edge.revalidated"
local writes = require "cdn.edge.writes"
local fetch = require "cdn.edge.fetch"
local debug_headers = require "cdn.edge.debug"
local images = require "cdn.edge.images"
local downloads = require "cdn.edge.downloads"
local signature = require "cdn.edge.signature"
local internal = require "cdn.edge.internal"

local var = ngx.var
local header = ngx.header
local now = ngx.time
local ngx_now = ngx.now
local start_time = ngx.req.start_time
local set_request_header = ngx.req.set_header
local clear_request_header = ngx.req.clear_header
local match = string.match
local tonumber = tonumber
local tostring = tostring
local byte = string.byte
local sub = string.sub
local meta_fields = require("cdn.edge.meta").fields
local invalidate_written = writes.invalidate_written

local _M = { _VERSION = "0.3.0" }

local settings
local metrics
-- "<edge>; hit; ttl=" and "<edge>; hit", built once
local hit_ttl, hit_no_ttl, collapsed_ttl

-- raw Accept-Encoding -> class, per worker (cdn.memo: at most 1,000 values, junk ones
-- cycle out)
local ae_classes
local AE_CLASS_CACHE_SIZE = 500

-- The hit path reads one nginx variable per phase and looks the rest up in
-- per-worker memos: in LuaJIT's interpreter (a handler called from C is never
-- traced) each ngx.var read costs about as much as nginx's whole cache lookup.
-- The variables the hit path reads and writes have short names: each access
-- lowercases and hashes the name (about 20 instructions a character).
--
-- $cdn_rq (the request's signature) -> a computed key entry (see request_entry):
--   "<1 if Range is ignored, else 0><Accept-Encoding>\n<Accept>\n<Host><URI>"
local requests_seen
local seq, seq_tick
local KEY_CACHE_SIZE = 20000
-- Longer signatures are keyed every time: 20,000 URIs of 16 KiB would cost a
-- worker hundreds of MB (the memo counts entries, not bytes).
local KEY_CACHE_MAX_ID = 512
-- $cdn_rs (the response's) of reused responses -> its parsed fields (see
-- response_fields):
--   "<cache status> <X-Cdn-Meta>"
local responses_seen
local RESPONSE_CACHE_SIZE = 20000
-- meta recorded by a revalidation -> its times and Cache-Control (see renewed)
local renewals_seen
local RENEWAL_CACHE_SIZE = 5000

-- Bodies larger than this go out by sendfile, smaller ones with their header in
-- one write (edge/render.ts SENDFILE_ABOVE). The key entry remembers which the
-- last response to its request needed ([8]); the entry of the request whose
-- header filter runs next is `current_entry`. When another request's lookup ran
-- in between (a cache lock, a miss), a size lands on that other request's entry:
-- this only ever picks how bytes are sent, never which, and that entry's own
-- next response puts it right.
local sendfile_above
local current_entry

-- A response that went to the upstream (and may have been stored).
local FETCHED = { MISS = true, EXPIRED = true, REVALIDATED = true, BYPASS = true }
local UNSAFE_METHODS = writes.UNSAFE_METHODS


function _M.init(settings_path)
    settings = settings_loader.load(settings_path)
    -- the debug filter adds to this module's header filter (it cannot require
    -- this module: this one requires it)
    debug_headers.init(settings, _M.header_filter)
    if settings.redis.passwordFile then
        settings.redis_password = settings_loader.read_secret(settings.redis.passwordFile)
    end
    fetch.init(settings)
    signature.init(settings.urlSigningKeysFile)
    images.init(settings.images)
    downloads.init(settings)
    generations.init(settings.generationTtl)
    sendfile_above = settings.sendfileAbove
end


function _M.init_worker()
    hit_ttl, hit_no_ttl = settings.id .. "; hit; ttl=", settings.id .. "; hit"
    collapsed_ttl = settings.id .. "; fwd=uri-miss; collapsed; ttl="
    requests_seen = memo.new(KEY_CACHE_SIZE)
    ae_classes = memo.new(AE_CLASS_CACHE_SIZE)
    responses_seen = memo.new(RESPONSE_CACHE_SIZE)
    renewals_seen = memo.new(RENEWAL_CACHE_SIZE)
    metrics = internal.init_worker(settings)
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
                   image ~= accept and image or nil, class
        end
    end
    return class, ae_rewrite, nil, class
end


-- An image variant request (images.lua) to the CDN's own origin: the canonical
-- query, or "" for the original bytes; with fmt=auto the Accept class joins
-- the key and Accept is reduced to it (the origin answers Vary: Accept).
-- Returns the key's query, the new Accept (or nil), the variant, the signed
-- URL's expiry; or nil and "<status> <reason>".
local function image_entry(path, ae_class)
    local query, auto, exp = images.query(path, var.args)
    if not query then
        return nil, auto .. " " .. exp
    end
    if not auto then
        return query, nil, nil, exp
    end
    local class, accept = images.accept_class(var.http_accept)
    return query .. "&@" .. class, accept ~= var.http_accept and accept or nil,
           variant_of(ae_class, key.image_accept(accept)), exp
end


-- Everything the key of a request signature needs, computed once per purge
-- sequence: { seq, key, soft-purged path or nil, variant, new Accept-Encoding,
-- new Accept, drop Range, send by sendfile (set later), If-Modified-Since
-- present, signed URL expiry, download claims, any of 3, 5-7, 9-11 set }; or nil
-- and the reason the target is refused.
local function request_entry(request)
    local path, err = key.path(var.request_uri)
    if not path then
        return nil, "400 " .. err
    end
    local host = key.host(var.http_host or "")
    local variant, ae_rewrite, accept_rewrite, ae_class = negotiation()
    local query, exp, download
    if downloads.enabled() and downloads.protected(path) then
        -- a signed download: the token is verified here once, then only its
        -- expiry and revocation per request; it never enters the key
        download, err = downloads.verify(path, var.args)
        if not download then
            return nil, err
        end
        query = ""
    elseif images.enabled() and not fetch.route(host, path) then
        local image_accept, image_variant
        query, image_accept, image_variant, exp = image_entry(path, ae_class)
        if not query then
            return nil, image_accept
        end
        if image_variant then
            accept_rewrite, variant = image_accept, image_variant
        end
    else
        query = key.query(var.args)
    end
    local entry = {
        seq,
        host .. path .. "?" .. query .. "#" .. generations.suffix(path),
        generations.soft(path) and path or nil,
        variant,
        ae_rewrite,
        accept_rewrite,
        -- RFC 9110 §14.2: an unparsable Range is ignored (200 with the whole
        -- body); nginx would answer 416 for it ($cdn_range_ignored).
        byte(request, 1) == 49, -- "1"
        nil, -- [8]: send by sendfile (header_filter)
        byte(request, 2) == 63, -- "?": If-Modified-Since ($cdn_if_modified_since)
        exp, -- [10]: a signed image URL's expiry
        download, -- [11]: a download token's claims (downloads.lua)
    }
    -- [12]: whether the lookup has more to do than return the key (one test
    -- on the hit path of a request whose headers need no rewriting)
    entry[12] = (entry[3] or ae_rewrite or accept_rewrite or entry[7] or entry[9]
                 or exp or download) and true or false
    return entry
end


-- Soft-purged paths only: whether this request refreshes `path` for its
-- variant. One that bypasses the cache for its cookies would not store the
-- response, so it never takes the claim from a request that would.
local function claim_refresh(path, variant)
    local bypass = var.cdn_cookie_bypass -- nil: no bypass cookies configured
    return (not bypass or bypass == "") and generations.claim_refresh(path, variant)
end


-- What a key entry asks of its request besides the key (entry[12]): the
-- signed URL's expiry and the download token checked, negotiation headers
-- rewritten, Range or If-Modified-Since dropped, a soft purge's refresh claimed.
-- false when the request is refused ($cdn_reject says why).
local function apply_entry(entry)
    -- (a signed URL's entry outlives its expiry in the memo)
    if entry[10] and now() > entry[10] + signature.CLOCK_SKEW then
        var.cdn_reject = "403 image URL signature: expired"
        return false
    end
    local download = entry[11]
    if download then
        local refused = downloads.check(download)
        if refused then
            var.cdn_reject = refused
            return false
        end
        ngx.ctx.download = download
        if download.uses then
            var.cdn_download_counted = "1"
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
    -- RFC 9110 §13.2.2: with If-None-Match, If-Modified-Since is ignored; nginx's
    -- not-modified filter would answer 200 when the date alone says "modified"
    -- although the entity tag matches
    if entry[9] and var.http_if_none_match then
        clear_request_header("If-Modified-Since")
    end
    -- soft-purged path: each variant is refreshed by one request
    if entry[3] and claim_refresh(entry[3], entry[4]) then
        var.cdn_refresh = "1"
    end
    return true
end


-- set_by_lua: the cache key (host, decoded path, filtered query, invalidation
-- generations), or "" when the request target tries traversal tricks (nginx
-- then answers 400 with $cdn_reject as the reason). Normalises the request's
-- negotiation headers, which nginx's Vary handling reads.
function _M.cache_key()
    local request = var.cdn_rq
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
    if entry[12] and not apply_entry(entry) then
        return ""
    end
    if entry[8] then
        var.cdn_sendfile = "1"
    end
    current_entry = entry
    return entry[2]
end


-- (the internal hop indexed its Surrogate-Key tags: fetch.lua)
local function on_fetched(path, stored)
    if path and stored then
        stored_paths.record(path)
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


-- Cache-Control, Age and Cache-Status of the public locations are added by
-- nginx (add_header) from $cdn_cc, $cdn_age and $cdn_cs, set here: on a HIT
-- the three variable writes cost about a quarter of adding the headers from
-- Lua (each of those escapes and copies name and value, and compares the name
-- with every header nginx treats specially).
-- nginx hid the stored Cache-Control and Cache-Status (proxy_hide_header) and
-- fetch.lua never stores Age, so each is added once.
local function restore_cache_control(cc)
    if cc ~= "" then
        var.cdn_cc = cc
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


-- $cdn_rs split: cache status ("" when nginx did not look up the cache)
-- and the X-Cdn-Meta fields (nil without one; see meta.lua). (The status is
-- read from ngx.status: $status in the map cost more than the read.)
local function response_fields(response)
    local cache_status, meta = match(response, "^(%S*) (.*)$")
    local r = { cache_status = cache_status ~= "" and cache_status or nil }
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
    local record = validator and revalidated.meta(
        var.cdn_cache_key .. (var.slice_range or ""), validator)
    if not record then
        return stored
    end
    local f = memo_get(renewals_seen, record)
    if not f then
        local meta, fields = revalidated.split(record)
        local born, expires, _, _, _, cc = meta_fields(meta)
        if not born then
            return stored
        end
        f = { born = born, expires = expires, cc = cc ~= "" and cc or nil,
              fields = fields }
        memo_set(renewals_seen, record, f)
    end
    return f
end


-- RFC 9111 §4.3.4: the other fields a 304 carried replace the stored ones.
local function renew_fields(fields)
    if fields then
        for i = 1, #fields do
            local f = fields[i]
            header[f[1]] = f[2]
        end
    end
end


-- Public header filter: Cache-Status (RFC 9211), Age, the origin's
-- Cache-Control, counters. A reused response costs one variable read, a memo
-- lookup and three variable writes (nginx adds the headers: see
-- restore_cache_control); its Age and Cache-Status strings are rebuilt once a
-- second.
-- `sized_at_log` is set by the locations whose sent bytes are counted in the
-- log phase (log_sent_bytes).
function _M.header_filter(sized_at_log)
    local code = ngx.status
    -- nginx's range filter, which runs after this one, turns an unsatisfiable
    -- range into its own 416, and that response passes the header filters
    -- again: what the first pass had nginx add must not be added twice, nor the
    -- response counted twice. (An origin's own 416 arrives with $cdn_cs unset.)
    if code == 416 and var.cdn_cs ~= "" then
        var.cdn_cc, var.cdn_age, var.cdn_cs = "", "", ""
        return
    end
    local response = var.cdn_rs
    local r = memo_get(responses_seen, response)
    if not r then
        r = response_fields(response)
        if REUSED[r.cache_status] then
            memo_set(responses_seen, response, r)
        end
    end
    if current_entry then
        -- (a size the meta does not know may be large)
        local size = r.size
        current_entry[8] = not size or size > sendfile_above
        current_entry = nil
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
                -- (strings: the variable would convert a number on every HIT)
                times.t, times.age = t, tostring(t - times.born)
                times.ttl_member = hit_ttl .. (times.expires - t)
            end
            if times.expires >= t or status ~= "HIT" then
                var.cdn_age = times.age -- (see restore_cache_control)
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
            renew_fields(times.fields)
        else
            member = hit_ttl .. 0
        end
        var.cdn_cs = r.upstream_cs
            and cache_status.header(var.upstream_http_cache_status, member)
            or member
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
    renew_fields(times.fields)
    if cc then
        restore_cache_control(cc)
        local age = now() - born
        if age > 0 then
            var.cdn_age = tostring(age) -- the age the origin reported, passed on
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
    var.cdn_cs = cache_status.header(var.upstream_http_cache_status,
        cache_status.value(settings.id, status, upstream_status, nil,
                           stored and status == "MISS"))

    if UNSAFE_METHODS[method] and path and invalidate_written(path) then
        -- this worker's next request re-reads the purge sequence even within
        -- this millisecond (read-your-writes for the client)
        seq_tick = nil
    end
    stats.count(status or "NONE", code, body_bytes(code, size, sized_at_log))
end


-- After an invalidation this worker applied outside the header filter (the
-- balancer's POST /invalidate, internal.lua): its next request re-reads the
-- purge sequence even within this millisecond, as after a write answered here.
function _M.reread_purges()
    seq_tick = nil
end


-- Header filter of the signed-download locations: the public one, then the
-- headers a buyer's response carries (downloads.lua). Slices after the first
-- are subrequests: only the response the client gets is described.
function _M.download_header_filter()
    if ngx.is_subrequest then
        return
    end
    _M.header_filter(true)
    local download = ngx.ctx.download
    if download then
        downloads.headers(download)
    end
end


-- Log phase of the use-limited download location: the bytes sent, for the
-- metrics and for the token's count.
function _M.log_download()
    _M.log_sent_bytes()
    downloads.log()
end


-- content_by_lua of /__cdn_reject: a target the key lookup refused, with the
-- status and reason it gave ("<status> <reason>" in $cdn_reject).
function _M.reject()
    local reject = var.cdn_reject or ""
    local status = tonumber(sub(reject, 1, 3)) or 400
    ngx.status = status
    header["Content-Type"] = "text/plain"
    header["Cache-Control"] = "no-store"
    if status == 503 then
        header["Retry-After"] = "2"
    end
    ngx.say(status == 403 and "forbidden: " or status == 503 and "service unavailable: "
            or "bad request: ", sub(reject, 5))
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


return _M
