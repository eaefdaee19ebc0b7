-- A bounded per-worker memo in two plain tables: new entries go into the
-- young table, an entry found in the old one moves up, and when the young one
-- is full the old one is dropped (at most 2 x size entries, the least recently
-- used half goes first).
--
-- Request paths run in LuaJIT's interpreter (a handler called from C
-- cannot be traced), where a plain table lookup costs a fraction of
-- resty.lrucache's FFI queue operations.
local setmetatable = setmetatable

local _M = { _VERSION = "0.1.0" }
local mt = { __index = _M }


function _M.new(size)
    return setmetatable({ young = {}, old = {}, count = 0, size = size }, mt)
end


function _M.set(self, k, v)
    if self.count >= self.size then
        self.old, self.young, self.count = self.young, {}, 0
    end
    self.young[k] = v
    self.count = self.count + 1
end


function _M.get(self, k)
    local v = self.young[k]
    if v ~= nil then
        return v
    end
    v = self.old[k]
    if v ~= nil then
        _M.set(self, k, v)
    end
    return v
end


return _M
