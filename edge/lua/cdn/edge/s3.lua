-- AWS Signature Version 4 for requests to an S3-compatible bucket (header
-- form, the payload left unsigned: the edge only reads).
-- https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html
--
-- HMAC-SHA256 and SHA-256: cdn/edge/crypto.lua (OpenSSL through the FFI).
local crypto = require "cdn.edge.crypto"

local gsub = string.gsub
local lower = string.lower
local sub = string.sub
local pairs = pairs
local sort = table.sort
local concat = table.concat
local utctime = os.date
local setmetatable = setmetatable

local _M = { _VERSION = "0.1.0" }
local mt = { __index = _M }

-- The payload hash of a request whose body is not signed (GET and HEAD have none).
_M.UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"

local hmac = crypto.hmac
local sha256 = crypto.sha256
local hex = crypto.hex

_M.hmac = hmac
_M.sha256 = sha256
_M.hex = hex


-- opts: access_key, secret_key, region, service (default "s3").
function _M.new(opts)
    return setmetatable({
        access_key = opts.access_key,
        secret_key = opts.secret_key,
        region = opts.region,
        service = opts.service or "s3",
        -- the signing key depends on the day only: derived once per day
        key_day = nil,
        day_key = nil,
    }, mt)
end


function _M.signing_key(self, day)
    if self.key_day ~= day then
        local k = hmac("AWS4" .. self.secret_key, day)
        k = hmac(k, self.region)
        k = hmac(k, self.service)
        self.day_key = hmac(k, "aws4_request")
        self.key_day = day
    end
    return self.day_key
end


-- The Authorization value. `uri` is the canonical (already encoded) path,
-- `query` the canonical query string ("" for none), `headers` a table of
-- name -> value that must include host, x-amz-date and x-amz-content-sha256
-- (every header given is signed), `amz_date` as in x-amz-date.
function _M.authorization(self, method, uri, query, headers, payload_hash, amz_date)
    local names = {}
    local lowered = {}
    for name, value in pairs(headers) do
        local l = lower(name)
        names[#names + 1] = l
        lowered[l] = (gsub(gsub(value, "^%s+", ""), "%s+$", ""))
    end
    sort(names)
    local canonical_headers = {}
    for i = 1, #names do
        canonical_headers[i] = names[i] .. ":" .. lowered[names[i]] .. "\n"
    end
    local signed_headers = concat(names, ";")
    local canonical = method .. "\n" .. uri .. "\n" .. query .. "\n"
                      .. concat(canonical_headers) .. "\n" .. signed_headers .. "\n"
                      .. payload_hash
    local day = sub(amz_date, 1, 8)
    local scope = day .. "/" .. self.region .. "/" .. self.service .. "/aws4_request"
    local to_sign = "AWS4-HMAC-SHA256\n" .. amz_date .. "\n" .. scope .. "\n"
                    .. hex(sha256(canonical))
    return "AWS4-HMAC-SHA256 Credential=" .. self.access_key .. "/" .. scope
           .. ",SignedHeaders=" .. signed_headers
           .. ",Signature=" .. hex(hmac(self:signing_key(day), to_sign))
end


-- x-amz-date for an epoch second: 20130524T000000Z.
function _M.amz_date(epoch)
    return utctime("!%Y%m%dT%H%M%SZ", epoch)
end


-- The headers to add to an unsigned-payload GET or HEAD of `uri` on `host`:
-- Authorization, x-amz-date, x-amz-content-sha256.
function _M.sign_read(self, method, uri, host, epoch)
    local amz_date = _M.amz_date(epoch)
    local headers = {
        host = host,
        ["x-amz-content-sha256"] = _M.UNSIGNED_PAYLOAD,
        ["x-amz-date"] = amz_date,
    }
    return self:authorization(method, uri, "", headers, _M.UNSIGNED_PAYLOAD, amz_date),
           amz_date
end


return _M
