-- Expiry of the TLS certificates the balancer serves (spec balancer.tls), for
-- /metrics and the CdnTlsCertificate* alerts. Two readings of each file:
--
--   loaded  read once in init_by_lua, i.e. by the master each time nginx loads
--           its configuration (start and every reload: a reload builds a new Lua
--           VM and runs init_by_lua again); nginx reads ssl_certificate in that
--           same configuration load, so this is the certificate shoppers get.
--   file    read again at every scrape (by the worker answering it), parsed
--           again only when the file's bytes changed: a renewal written to disk
--           shows up here at once, but nginx serves it only after a reload. The
--           two differing for long is what CdnTlsCertificateRenewedNotLoaded says.
--
-- The PEM is parsed with LuaJIT's FFI against the OpenSSL libcrypto nginx links
-- (Debian 12: libcrypto.so.3): no Lua binding for X.509 is packaged by Debian.
-- The first certificate of the file is the one nginx presents (a chain file
-- holds the leaf first).
local ffi = require "ffi"
local render_gauge = require("cdn.metrics").render_gauge

local C = ffi.C
local ffi_new = ffi.new
local ffi_string = ffi.string
local open = io.open
local log = ngx.log
local WARN = ngx.WARN
local pcall = pcall
local ipairs = ipairs
local tonumber = tonumber
local tostring = tostring

local _M = { _VERSION = "0.1.0" }

_M.METRIC = "cdn_tls_certificate_not_after_seconds"
-- 0 while the workers cannot read or parse a certificate file (e.g. a 0600 root
-- file, as certbot leaves them): the file series is then missing, and an alert
-- comparing it with the loaded one could never fire.
_M.READABLE_METRIC = "cdn_tls_certificate_file_readable"

-- Opaque OpenSSL types are void * here: another module's cdef of X509 or BIO
-- would clash with typedefs of our own. struct tm is glibc's layout (x86_64
-- and arm64 alike), under our own name.
ffi.cdef [[
struct cdn_tm {
    int tm_sec; int tm_min; int tm_hour; int tm_mday; int tm_mon; int tm_year;
    int tm_wday; int tm_yday; int tm_isdst;
    long tm_gmtoff;
    const char *tm_zone;
};
void *BIO_new_mem_buf(const void *buf, int len);
int BIO_free(void *bio);
void *PEM_read_bio_X509(void *bio, void **x, void *cb, void *u);
void X509_free(void *x509);
const void *X509_get0_notAfter(const void *x509);
void *X509_get_subject_name(const void *x509);
char *X509_NAME_oneline(const void *name, char *buf, int size);
int ASN1_TIME_to_tm(const void *time, struct cdn_tm *tm);
void ERR_clear_error(void);
long timegm(struct cdn_tm *tm);
]]

-- nginx links libcrypto, so its symbols are in the process's global scope
-- (checked with Debian 12's nginx 1.22); should a build load it privately, ask
-- for it by name. Without it the gauge is missing, the balancer still runs.
local crypto = C
local no_crypto
if not pcall(function() return C.X509_get0_notAfter end) then
    local ok, lib = pcall(ffi.load, "libcrypto.so.3")
    crypto = ok and lib or nil
    no_crypto = not ok and "libcrypto is not available: " .. tostring(lib) or nil
end

local tm = ffi_new("struct cdn_tm")
local name_buf = ffi_new("char[?]", 512)

local paths = {}    -- configured certificate files
local loaded = {}   -- path -> { not_after, subject } as nginx loaded it
local on_disk = {}  -- path -> { pem, not_after, subject }, per worker
local last_err = {} -- path -> the last error logged, so a scrape loop logs once


-- Parses the first certificate of a PEM text: its notAfter in epoch seconds and
-- its subject ("/CN=shop.example"), or nil and an error.
function _M.parse(pem)
    if no_crypto then
        return nil, no_crypto
    end
    local bio = crypto.BIO_new_mem_buf(pem, #pem)
    if bio == nil then
        return nil, "failed to allocate a BIO"
    end
    local x509 = crypto.PEM_read_bio_X509(bio, nil, nil, nil)
    crypto.BIO_free(bio)
    if x509 == nil then
        crypto.ERR_clear_error()
        return nil, "no PEM certificate found"
    end
    local ok = crypto.ASN1_TIME_to_tm(crypto.X509_get0_notAfter(x509), tm) == 1
    local subject = crypto.X509_NAME_oneline(crypto.X509_get_subject_name(x509),
                                             name_buf, 512)
    subject = subject ~= nil and ffi_string(subject) or ""
    crypto.X509_free(x509)
    if not ok then
        crypto.ERR_clear_error()
        return nil, "failed to read notAfter"
    end
    -- ASN1_TIME_to_tm fills in UTC; timegm reads it as UTC
    return tonumber(C.timegm(tm)), subject
end


local function read(path)
    local f, err = open(path, "rb")
    if not f then
        return nil, "failed to open: " .. err
    end
    local pem = f:read("*a")
    f:close()
    return pem
end


local function warn_once(path, err)
    if last_err[path] ~= err then
        last_err[path] = err
        log(WARN, "certificates: ", path, ": ", err)
    end
end


-- From init_by_lua: the certificate files nginx has just loaded.
function _M.init(cert_paths)
    paths = cert_paths or {}
    for _, path in ipairs(paths) do
        local pem, err = read(path)
        local not_after, subject
        if pem then
            not_after, subject = _M.parse(pem)
        end
        if not_after then
            loaded[path] = { not_after = not_after, subject = subject }
        else
            -- not expected: nginx refuses to start without a readable certificate
            warn_once(path, pem and subject or err)
        end
    end
end


-- The file as it is now; parsed again only when its bytes changed.
local function current(path)
    local pem, err = read(path)
    if not pem then
        warn_once(path, err)
        on_disk[path] = nil
        return nil
    end
    local cached = on_disk[path]
    if cached and cached.pem == pem then
        return cached
    end
    local not_after, subject = _M.parse(pem)
    if not not_after then
        warn_once(path, subject)
        on_disk[path] = nil
        return nil
    end
    last_err[path] = nil
    cached = { pem = pem, not_after = not_after, subject = subject }
    on_disk[path] = cached
    return cached
end


local LABELS = { "path", "subject", "source" }
local HELP = "notAfter of a TLS certificate the balancer serves, in Unix seconds;"
    .. " source=loaded: as nginx loaded it (start or last reload),"
    .. " source=file: the file on disk now"


local READABLE_HELP = "1 while the balancer's workers can read and parse the certificate"
    .. " file (the file series of " .. _M.METRIC .. " needs it)"


-- The gauge family for /metrics (empty without TLS). Rendered at each scrape,
-- never kept in the shared dict: a series whose subject changed with a renewal
-- must go away, not linger with the old date and keep an alert firing.
function _M.render_metrics()
    if #paths == 0 then
        return ""
    end
    local samples, readable = {}, {}
    for _, path in ipairs(paths) do
        local l = loaded[path]
        if l then
            samples[#samples + 1] = { { path, l.subject, "loaded" }, l.not_after }
        end
        local d = current(path)
        if d then
            samples[#samples + 1] = { { path, d.subject, "file" }, d.not_after }
        end
        readable[#readable + 1] = { { path }, d and 1 or 0 }
    end
    return render_gauge(_M.METRIC, HELP, LABELS, samples)
        .. render_gauge(_M.READABLE_METRIC, READABLE_HELP, { "path" }, readable)
end


return _M
