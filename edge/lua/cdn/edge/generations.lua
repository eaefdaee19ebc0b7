-- Invalidation by generations: a purge never deletes cache files, it bumps a
-- counter that is part of the cache key, so the old entry is simply never looked
-- up again (nginx evicts it as inactive). URL, prefix and global purges are O(1).
--
-- Counters live in lua_shared_dict `cdn_gens`. They are only ever created with
-- safe_add (which fails instead of evicting), because an evicted counter would
-- silently resurrect purged objects. When the zone is full the edge starts over
-- (reset): a new epoch makes every stored key unreachable, which is always
-- correct, and dropping every counter frees the zone for precise purges again.
local stored_paths = require "cdn.edge.stored"

local find = string.find
local sub = string.sub
local floor = math.floor
local tostring = tostring
local log = ngx.log
local WARN = ngx.WARN

local _M = { _VERSION = "0.1.0" }

local dict = ngx.shared.cdn_gens
-- Seconds a path's or prefix's counter outlives its last purge (settings
-- generationTtl: longer than the cache keeps an entry nobody asks for). By then
-- every entry keyed with an older generation has been evicted as inactive, so
-- the counter can go; one that comes back starts from the clock (see
-- bump_generation), above any value it had.
local counter_ttl = 0

local ALL = "all"
local EPOCH = "epoch"
local PREFIX_COUNT = "prefixes"
-- Bumped by every purge: workers cache computed keys and recompute them only
-- when this changed (one shared-dict read per request instead of several).
local SEQ = "seq"



local function new_epoch()
    return tostring(ngx.now() * 1000) .. "-" .. tostring(ngx.worker.pid())
end


-- Runs once per nginx start (init_by_lua). The shared zone survives a reload but
-- not a restart; the disk cache survives both. A fresh epoch per start keeps
-- entries stored before a restart (under generations we no longer know) from
-- ever matching again.
function _M.init(ttl)
    counter_ttl = ttl or 0
    if not dict then
        error("lua_shared_dict cdn_gens is missing", 2)
    end
    dict:safe_add(EPOCH, new_epoch())
    dict:safe_add(ALL, 0)
    dict:safe_add(PREFIX_COUNT, 0)
    dict:safe_add(SEQ, 0)
    stored_paths.init()
end


function _M.seq()
    return dict:get(SEQ)
end


-- The zone is full: start over. The new epoch makes every stored key
-- unreachable (as a restart does), the counters, the tag index and the set of
-- stored paths are dropped to free the zones, and SEQ keeps growing (set last)
-- so workers recompute keys.
function _M.reset(reason)
    local seq = dict:get(SEQ) or 0
    dict:flush_all()
    dict:flush_expired()
    local tags = ngx.shared.cdn_tags
    if tags then
        tags:flush_all()
        tags:flush_expired()
    end
    -- before the new epoch: a response keyed under it must find the set empty
    stored_paths.reset()
    -- (SEQ in the epoch: two resets within one millisecond still differ)
    dict:set(EPOCH, new_epoch() .. "-" .. (seq + 1))
    dict:set(ALL, 0)
    dict:set(PREFIX_COUNT, 0)
    dict:set(SEQ, seq + 1)
    log(WARN, "generations: shared zone full (", reason,
        "); every stored object was invalidated and the zones emptied")
end


-- The generation is bumped before SEQ: a worker reads SEQ before the
-- generations, so it can cache a key under an old SEQ (and recompute it next
-- time) but never an old generation under the new SEQ.
local function bump_generation(key)
    local v, err = dict:incr(key, 1)
    if v then
        if counter_ttl > 0 then
            dict:expire(key, counter_ttl)
        end
        return v
    end
    if err == "not found" then
        -- from the clock, not from 1: a counter that expired and comes back must
        -- never return to a value it had (an entry keyed with it may be on disk)
        local start = floor(ngx.now() * 1000)
        local ok, aerr = dict:safe_add(key, start, counter_ttl)
        if ok then
            return start
        end
        if aerr == "exists" then
            return dict:incr(key, 1)
        end
        err = aerr
    end
    _M.reset("failed to bump " .. key .. ": " .. tostring(err))
    return 0
end


local function bump(key)
    local v = bump_generation(key)
    dict:incr(SEQ, 1)
    return v
end


function _M.purge_all()
    local v = dict:incr(ALL, 1)
    dict:incr(SEQ, 1)
    return v
end


function _M.purge_path(path)
    return bump("u:" .. path)
end


-- Soft purge: the stored copy stays in use, but the next request for the path
-- (one, across workers: see claim_refresh) fetches it again and replaces it.
function _M.soft_purge_path(path)
    return bump("s:" .. path)
end


-- The soft-purge generation of `path`, or nil when it was never soft-purged.
function _M.soft(path)
    return dict:get("s:" .. path)
end


-- True for exactly one caller per soft purge of `path` and `variant` (the
-- negotiated Accept-Encoding / Accept): that request bypasses the cache and
-- stores the fresh response. A claim lapses after a minute, so a refresh that
-- did not store (client gone, origin error) is tried again; refreshed() ends it.
function _M.claim_refresh(path, variant)
    local soft = dict:get("s:" .. path)
    if not soft then
        return false
    end
    local id = path .. ":" .. soft .. ":" .. variant
    if dict:get("d:" .. id) then
        return false
    end
    return (dict:safe_add("c:" .. id, true, 60)) == true
end


-- The refresh of this soft purge of `path` for `variant` was stored.
function _M.refreshed(path, variant)
    local soft = dict:get("s:" .. path)
    if soft then
        -- (goes with its soft-purge counter)
        dict:safe_set("d:" .. path .. ":" .. soft .. ":" .. variant, true, counter_ttl)
    end
end


-- Prefixes end with "/" and are matched on segment boundaries.
function _M.purge_prefix(prefix)
    dict:incr(PREFIX_COUNT, 1) -- before SEQ moves, like the generation itself
    return bump("p:" .. prefix)
end


-- The generation part of a cache key for `path`. Generations only grow, so the
-- sum of the prefix generations changes whenever any of them is bumped.
-- A key made while another worker resets the zone (between emptying it and
-- writing the new epoch) must never match anything again, so it gets an epoch
-- of its own rather than a guess.
local keys_without_epoch = 0
local function no_epoch()
    keys_without_epoch = keys_without_epoch + 1
    return "reset-" .. ngx.now() .. "-" .. ngx.worker.pid() .. "-" .. keys_without_epoch
end


function _M.suffix(path)
    local sum = 0
    -- The prefix part is always present (".0" when no prefix was ever purged),
    -- so the first prefix purge changes only the keys under that prefix.
    if (dict:get(PREFIX_COUNT) or 0) > 0 then
        local pos = 1
        while true do
            local slash = find(path, "/", pos, true)
            if not slash then
                break
            end
            sum = sum + (dict:get("p:" .. sub(path, 1, slash)) or 0)
            pos = slash + 1
        end
    end
    -- read every time (this is the slow path): a reset replaces the epoch
    return (dict:get(EPOCH) or no_epoch()) .. "." .. (dict:get(ALL) or 0) .. "."
           .. (dict:get("u:" .. path) or 0) .. "." .. sum
end


return _M
