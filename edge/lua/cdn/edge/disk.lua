-- Size and free space of the filesystem that holds the disk cache, read with
-- statvfs(3) when metrics are scraped (a system call, no walk of the cache).
-- nginx keeps the cache itself under max_size; what runs out in practice is
-- the disk under it (logs, other caches, a max_size set too large).
local ffi = require "ffi"
local C = ffi.C
local tonumber = tonumber

local _M = { _VERSION = "0.1.0" }

ffi.cdef [[
struct cdn_statvfs {
    unsigned long f_bsize;
    unsigned long f_frsize;
    unsigned long f_blocks;
    unsigned long f_bfree;
    unsigned long f_bavail;
    unsigned long f_files;
    unsigned long f_ffree;
    unsigned long f_favail;
    unsigned long f_fsid;
    unsigned long f_flag;
    unsigned long f_namemax;
    int __f_spare[6];
};
int statvfs(const char *path, struct cdn_statvfs *buf);
]]

local buf = ffi.new("struct cdn_statvfs")


-- Returns size and available bytes (for unprivileged writers) of the
-- filesystem holding `path`, or nil and an error.
function _M.usage(path)
    if C.statvfs(path, buf) ~= 0 then
        return nil, "failed to statvfs " .. path
    end
    local unit = tonumber(buf.f_frsize)
    return tonumber(buf.f_blocks) * unit, tonumber(buf.f_bavail) * unit
end


return _M
