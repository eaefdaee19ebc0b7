-- Front-door checks and the shopper's region.
--
-- nginx 1.22 already answers 400 and closes for Content-Length together with
-- Transfer-Encoding, duplicate Content-Length, obs-fold, a space before the
-- colon, NUL in a header, bad chunk sizes and a missing or repeated Host, and 501
-- for a transfer coding other than chunked (test/e2e/balancer-smuggling.test.ts
-- pins each case). What it lets through, and this module refuses:
--   * other control characters in header values (RFC 9110 §5.5), e.g. BEL;
--   * an absolute-form target whose host differs from the Host header (nginx
--     would route by the target's host while logs and caches saw another);
--   * hosts outside the configured list (spec balancer.hosts), with 421.
-- Refusals are nginx's own `return 400` (see balancer/render.ts), so nginx sends
-- its error page and closes the connection: pipelined bytes after it are never
-- read as a request.
local regex = require "resty.core.regex"
local ffi = require "ffi"

local var = ngx.var
local raw_header = ngx.req.raw_header
local exec_regex = ffi.C.ngx_http_lua_ffi_exec_regex
local find = string.find
local lower = string.lower
local sub = string.sub
local byte = string.byte
local ipairs = ipairs
local error = error
local tostring = tostring

local _M = { _VERSION = "0.1.0" }

-- CTL characters other than HTAB, and a CR not followed by LF (PCRE, JIT).
local BAD_FIELD_BYTES = [[[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|\r(?!\n)]]
local PCRE_ERROR_NOMATCH = -1
local bad_field_bytes, bad_field_flags   -- compiled once per worker

local hosts          -- set of lowercase hosts, or nil for any host
local known_regions  -- set of region names
local default_region
local header_var     -- ngx.var name of the trusted region header
local use_trusted
local use_cidr


-- settings: the balancer's settings (hosts, regionHeaderVariable, order, and whether
-- trusted proxies and client networks are configured).
function _M.init(settings)
    if settings.hosts and settings.hosts ~= ngx.null then
        hosts = {}
        for _, h in ipairs(settings.hosts) do
            hosts[lower(h)] = true
        end
    end
    known_regions = {}
    for _, r in ipairs(settings.regions) do
        known_regions[r.name] = true
    end
    default_region = settings.order[1]
    header_var = settings.regionHeaderVariable
    use_trusted = #settings.trustedProxies > 0
    use_cidr = #settings.cidrRegions > 0
end


function _M.init_worker()
    local compiled, err, flags = regex.re_match_compile(BAD_FIELD_BYTES, "jo")
    if not compiled then
        error("front: bad regex: " .. tostring(err))
    end
    bad_field_bytes, bad_field_flags = compiled, flags
end


-- True when the request's header block holds bytes nginx lets through but
-- an edge or origin could read differently (checked on every request).
-- The regex is run directly (resty.core's own compile and exec): ngx.re.find
-- would build its cache key and look it up on every request.
function _M.bad_bytes()
    local block = raw_header(true)
    -- anything but "no match" refuses, a PCRE error (match limit) included
    return exec_regex(bad_field_bytes, bad_field_flags, block, #block, 0) ~= PCRE_ERROR_NOMATCH
end


-- Returns nil when the request's host may pass, else the status to answer with
-- (as a string, for nginx.conf). Depends only on the Host header and request
-- target, so the balancer remembers the answer per request signature.
function _M.host_refusal()
    local host = var.host
    local http_host = var.http_host
    if http_host and http_host ~= host then
        -- $host is the absolute-form target's host when there is one, else Host
        -- lowercased without its port
        local h = lower(http_host)
        local colon = find(h, byte(h, 1) == 91 and "]:" or ":", 1, true) -- "["
        if colon then
            h = sub(h, 1, byte(h, 1) == 91 and colon or colon - 1)
        end
        if h ~= host then
            return "400"
        end
    end
    if hosts and not hosts[host] then
        return "421"
    end
    return nil
end


-- The region to start from: a trusted peer's header, else the client network's
-- region, else the default region.
function _M.region()
    if use_trusted and var.cdn_trusted_peer == "1" then
        local r = var[header_var]
        if r then
            r = lower(r)
            if known_regions[r] then
                return r
            end
        end
    end
    if use_cidr then
        local r = var.cdn_cidr_region
        if r and known_regions[r] then
            return r
        end
    end
    return default_region
end


return _M
