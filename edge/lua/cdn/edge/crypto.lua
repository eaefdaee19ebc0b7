-- HMAC-SHA256 and SHA-256 for the edge (S3 request signing, signed URLs).
-- They come from OpenSSL's libcrypto through the FFI: nginx is linked against
-- it, so the symbols are already in the process (Debian has no
-- lua-resty-string or lua-resty-hmac package).
local ffi = require "ffi"
local bit = require "bit"

local C = ffi.C
local ffi_new = ffi.new
local ffi_string = ffi.string
local byte = string.byte
local format = string.format
local gsub = string.gsub
local bor = bit.bor
local bxor = bit.bxor

-- pcall: another module may have declared these already (a redefinition is an
-- error in LuaJIT's FFI).
pcall(ffi.cdef, [[
typedef struct evp_md_st EVP_MD;
const EVP_MD *EVP_sha256(void);
unsigned char *HMAC(const EVP_MD *evp_md, const void *key, int key_len,
                    const unsigned char *d, size_t n, unsigned char *md,
                    unsigned int *md_len);
unsigned char *SHA256(const unsigned char *d, size_t n, unsigned char *md);
]])

local _M = { _VERSION = "0.1.0" }

local buf = ffi_new("unsigned char[32]")
local buf_len = ffi_new("unsigned int[1]")
local sha256_md = C.EVP_sha256()


function _M.hmac(key, data)
    C.HMAC(sha256_md, key, #key, data, #data, buf, buf_len)
    return ffi_string(buf, 32)
end


function _M.sha256(data)
    C.SHA256(data, #data, buf)
    return ffi_string(buf, 32)
end


function _M.hex(bin)
    return (gsub(bin, ".", function(c) return format("%02x", byte(c)) end))
end


-- Compares two strings in time that depends only on their length, so a
-- signature cannot be guessed a byte at a time from response times.
function _M.equal(a, b)
    if #a ~= #b then
        return false
    end
    local diff = 0
    for i = 1, #a do
        diff = bor(diff, bxor(byte(a, i), byte(b, i)))
    end
    return diff == 0
end


return _M
