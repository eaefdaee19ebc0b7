-- Raw assets straight from the object storage bucket (S3/MinIO), on misses.
--
-- The origin's S3 driver stores every asset at its own key with Content-Type,
-- Cache-Control (when the asset has its own) and x-amz-meta-cdn-* (sha256,
-- tags), so the fetch hop can read it from the bucket itself with a signed GET
-- and give it the headers the origin's delivery would: the sha256 ETag, the
-- Cache-Control policy (the asset's own, else by type, else the default),
-- nosniff, the SVG sandbox; and the tags, which the hop indexes as it does an
-- origin's Surrogate-Key. Nothing else S3 sends (x-amz-*, its ETag, Vary,
-- Server) reaches the cache or clients.
--
-- Requests this module does not claim keep going to the origin: every method
-- but GET/HEAD, its own routes (/v1/..., /healthz, ...), versioned /_v/<sha256>/
-- URLs (the origin checks the version against the stored object before it
-- sends a byte: a mismatch is a 404, never the current bytes), and anything
-- that is not a valid asset key (including the origin's .cdn-tmp/ uploads).
local s3 = require "cdn.edge.s3"
local settings_loader = require "cdn.settings"

local var = ngx.var
local header = ngx.header
local get_req_headers = ngx.req.get_headers
local set_req_header = ngx.req.set_header
local clear_req_header = ngx.req.clear_header
local now = ngx.time
local log = ngx.log
local ERR = ngx.ERR
local find = string.find
local match = string.match
local sub = string.sub
local lower = string.lower
local byte = string.byte
local pairs = pairs
local type = type

local _M = { _VERSION = "0.1.0" }

local config
local signer
-- object path -> "<sha256>\n<cache-control>\n<tags>" of the last full response,
-- which a 304 from S3 does not repeat (see prepare)
local policies = ngx.shared.cdn_bucket

-- The origin's key rules, rendered from origin/contract/asset-key.ts.
local reserved_first
local reserved
local sandboxed  -- media types served with the sandbox CSP (and any *+xml)
local max_key_length
local READS = { GET = true, HEAD = true }

-- What S3 may say that the origin's delivery says too; the rest is dropped.
local KEPT = {
    ["content-type"] = true, ["content-length"] = true, ["last-modified"] = true,
    ["date"] = true, ["accept-ranges"] = true, ["cache-control"] = true,
    -- nginx manages these itself
    ["connection"] = true, ["transfer-encoding"] = true, ["keep-alive"] = true,
}



-- init_by_lua: `c` is the edge settings' "bucket" entry. The keys are read
-- from their files here, so they never appear in settings or nginx.conf.
local function set_of(list)
    local set = {}
    for i = 1, #list do
        set[list[i]] = true
    end
    return set
end


function _M.init(c)
    config = c
    reserved_first = set_of(c.reservedFirstSegments)
    reserved = set_of(c.reservedKeys)
    sandboxed = set_of(c.sandbox.types)
    max_key_length = c.maxKeyLength
    signer = s3.new({
        access_key = settings_loader.read_secret(c.accessKeyFile),
        secret_key = settings_loader.read_secret(c.secretKeyFile),
        region = c.region,
    })
end


function _M.enabled()
    return config ~= nil
end


-- The asset key of a raw request path ("/a/b.jpg" -> "a/b.jpg") when it is a
-- key the origin could have stored (the rules of asset-key.ts), else nil.
-- Keys use only [A-Za-z0-9/_.-], so the path needs no SigV4 encoding.
function _M.key(raw_path)
    local k = sub(raw_path, 2)
    if k == "" or #k > max_key_length
       or not find(k, "^[A-Za-z0-9][A-Za-z0-9/_.-]*$")
       or byte(k, -1) == 47 -- "/"
       or find(k, "//", 1, true)
       or find(k, "/%.%.?/") or find(k, "/%.%.?$")
       or reserved[k] then
        return nil
    end
    local slash = find(k, "/", 1, true)
    if reserved_first[slash and sub(k, 1, slash - 1) or k] then
        return nil
    end
    return k
end


-- Fetch hop (set_by_lua): claims a GET/HEAD of a raw asset for the bucket.
-- Returns the object path ("/<bucket>/<key>") or nil. The query is dropped, as
-- the origin ignores it too, and S3 would act on ?acl, ?versionId or
-- ?response-content-type=.
function _M.claim(method, raw_path)
    if not config or not READS[method] then
        return nil
    end
    local k = _M.key(raw_path)
    return k and ("/" .. config.bucket .. "/" .. k)
end


-- Fetch hop (set_by_lua): turns the request into a signed read of `object`.
-- Only a revalidation's If-Modified-Since goes on; everything the client or
-- the public server sent (cookies, Authorization, x-amz-* that S3 would act
-- on or refuse unsigned) is dropped. If-None-Match carries our sha256 ETag,
-- which S3 cannot compare; If-Modified-Since is kept only when the policy a
-- 304 needs is known, else S3 sends the whole object.
function _M.prepare(object)
    local ims = var.http_if_modified_since
    -- every header (0: no limit), however many a client sent
    local h = get_req_headers(0)
    for name in pairs(h) do
        if name ~= "host" then
            clear_req_header(name)
        end
    end
    if ims and policies:get(object) then
        set_req_header("If-Modified-Since", ims)
    end
    -- the method as it will be sent (the public server turns a cached HEAD into a GET)
    local auth, amz_date = signer:sign_read(var.request_method, object, config.host, now())
    set_req_header("Host", config.host)
    var.cdn_bucket_host = config.host
    set_req_header("x-amz-date", amz_date)
    set_req_header("x-amz-content-sha256", s3.UNSIGNED_PAYLOAD)
    set_req_header("Authorization", auth)
    var.cdn_upstream_sni = config.sni
    return config.upstream
end


-- The origin's policy for an asset without its own Cache-Control
-- (cacheControlOf in origin/src/assets/cache-policy.ts).
local function policy_of(content_type)
    local essence = lower(content_type or "")
    local semi = find(essence, ";", 1, true)
    if semi then
        essence = sub(essence, 1, semi - 1)
    end
    essence = essence:gsub("^%s+", ""):gsub("%s+$", "")
    local by_type = config.cacheControlByType
    for i = 1, #by_type do
        local pattern, value = by_type[i][1], by_type[i][2]
        if sub(pattern, -2) == "/*" then
            if sub(essence, 1, #pattern - 1) == sub(pattern, 1, -2) then
                return value
            end
        elseif essence == pattern then
            return value
        end
    end
    return config.defaultCacheControl
end


local function one(v)
    return type(v) == "table" and v[1] or v
end


local function drop_s3_headers(h)
    for name in pairs(h) do
        if not KEPT[name] then
            header[name] = nil
        end
    end
end


-- SVG and XML opened directly must not run scripts: the origin's rule
-- (origin/contract/sandbox.ts), handed over in the settings.
local function needs_sandbox(content_type)
    local essence = lower(match(content_type, "^%s*([^;%s]+)") or "")
    local suffix = config.sandbox.suffix
    return sandboxed[essence] or sub(essence, -#suffix) == suffix
end


-- Fetch hop header filter, for a response from the bucket (or the 404 the hop
-- made of one): rewrites the headers into the origin's and returns the table
-- the freshness rules read. Returns nil, reason for an object that is not an
-- asset (no cdn-sha256: not written by the origin), which the caller turns into
-- a 404 without its body.
function _M.response(status, h, object)
    if status == 404 then
        header["Content-Type"] = "application/json; charset=utf-8"
        header["Cache-Control"] = config.notFoundCacheControl
        return { ["cache-control"] = config.notFoundCacheControl, date = h.date }
    end
    local sha, cc, tags
    if status == 304 then
        local policy = policies:get(object)
        if policy then
            local a = find(policy, "\n", 1, true)
            local b = find(policy, "\n", a + 1, true)
            sha, cc, tags = sub(policy, 1, a - 1), sub(policy, a + 1, b - 1), sub(policy, b + 1)
        end
    else
        sha = one(h["x-amz-meta-cdn-sha256"])
        if not sha or not find(sha, "^%x+$") or #sha ~= 64 then
            drop_s3_headers(h)
            return nil, "no x-amz-meta-cdn-sha256"
        end
        cc = one(h["cache-control"]) or policy_of(one(h["content-type"]))
        tags = one(h["x-amz-meta-cdn-tags"]) or ""
        policies:set(object, sha .. "\n" .. cc .. "\n" .. tags)
    end
    drop_s3_headers(h)
    local out = { date = h.date, ["last-modified"] = h["last-modified"],
                  ["content-length"] = h["content-length"] }
    if sha then
        header["ETag"] = '"' .. sha .. '"'
        header["Cache-Control"] = cc
        out["cache-control"] = cc
        if tags ~= "" then
            out["surrogate-key"] = tags -- (indexed by the hop: fetch.lua)
        end
    end
    if status == 200 then
        header["X-Content-Type-Options"] = "nosniff"
        local ct = one(h["content-type"])
        if ct and needs_sandbox(ct) then
            header["Content-Security-Policy"] = config.sandbox.csp
        end
    end
    return out
end


-- Fetch hop, S3 refused the signed read (403) or answered with an error: logged
-- for the operator (the body, which names the bucket, is not passed on).
function _M.log_refusal(object)
    log(ERR, "bucket: object storage answered ", var.upstream_status or "-",
        " for ", object or "-", "; check the edge's read credentials and the",
        " bucket policy (a missing key is a 404 only with s3:ListBucket)")
end


return _M
