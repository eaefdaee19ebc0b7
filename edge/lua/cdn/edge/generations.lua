-- Invalidation by generations: a purge never deletes cache files, it bumps a
-- counter that is part of the cache key, so the old entry is simply never looked
-- up again (nginx evicts it as inactive). URL, prefix and global purges are O(1).
--
-- Counters live in lua_shared_dict `cdn_gens`. They are only ever created with
-- safe_add (which fails instead of evicting), because an evicted counter would
-- silently resurrect purged objects; when the zone is full the edge falls back to
-- bumping the global generation, which is always correct.
local find = string.find
local sub = string.sub
local tostring = tostring
local log = ngx.log
local WARN = ngx.WARN

local _M = { _VERSION = "0.1.0" }

local dict = ngx.shared.cdn_gens

local ALL = "all"
local EPOCH = "epoch"
local PREFIX_COUNT = "prefixes"

local epoch -- per-worker copy of the constant epoch


-- Runs once per nginx start (init_by_lua). The shared zone survives a reload but
-- not a restart; the disk cache survives both. A fresh epoch per start keeps
-- entries stored before a restart (under generations we no longer know) from
-- ever matching again.
function _M.init()
    if not dict then
        error("lua_shared_dict cdn_gens is missing", 2)
    end
    dict:safe_add(EPOCH, tostring(ngx.now() * 1000) .. "-" .. tostring(ngx.worker.pid()))
    dict:safe_add(ALL, 0)
    dict:safe_add(PREFIX_COUNT, 0)
end


function _M.init_worker()
    epoch = dict:get(EPOCH)
end


local function bump(key)
    local v, err = dict:incr(key, 1)
    if v then
        return v
    end
    if err == "not found" then
        local ok, aerr = dict:safe_add(key, 1)
        if ok then
            return 1
        end
        if aerr == "exists" then
            return dict:incr(key, 1)
        end
        err = aerr
    end
    log(WARN, "generations: failed to bump ", key, " (", err,
        "); invalidating everything instead")
    return dict:incr(ALL, 1)
end


function _M.purge_all()
    return dict:incr(ALL, 1)
end


function _M.purge_path(path)
    return bump("u:" .. path)
end


-- Prefixes end with "/" and are matched on segment boundaries.
function _M.purge_prefix(prefix)
    local v = bump("p:" .. prefix)
    dict:incr(PREFIX_COUNT, 1)
    return v
end


-- The generation part of a cache key for `path`. Generations only grow, so the
-- sum of the prefix generations changes whenever any of them is bumped.
function _M.suffix(path)
    local s = epoch .. "." .. (dict:get(ALL) or 0) .. "."
              .. (dict:get("u:" .. path) or 0)
    if (dict:get(PREFIX_COUNT) or 0) > 0 then
        local sum, pos = 0, 1
        while true do
            local slash = find(path, "/", pos, true)
            if not slash then
                break
            end
            sum = sum + (dict:get("p:" .. sub(path, 1, slash)) or 0)
            pos = slash + 1
        end
        s = s .. "." .. sum
    end
    return s
end


return _M
