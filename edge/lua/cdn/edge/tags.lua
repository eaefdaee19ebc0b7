-- Tag (Surrogate-Key) index: which paths carried a tag when they were fetched, so
-- a tag purge can bump the generation of exactly those paths (as Varnish xkey does
-- with a secondary index). Lists are appended with rpush, which is atomic across
-- workers and fails instead of evicting; a full zone falls back to a global purge.
local gmatch = string.gmatch
local tostring = tostring
local log = ngx.log
local WARN = ngx.WARN

local generations = require "cdn.edge.generations"

local _M = { _VERSION = "0.1.0" }

local dict = ngx.shared.cdn_tags

local MAX_TAGS = 64


-- Called by the internal hop for every response fetched from upstream (never
-- on hits), with the time its request started. A tag purge that arrived while
-- the fetch was in flight found nothing to pop for this path; the response may
-- predate it, so the path is purged again now that it is stored.
function _M.record(path, header, started)
    if not header or header == "" then
        return
    end
    local purged_meanwhile = false
    local n = 0
    local indexed = dict:get("p:" .. path) == header
    for tag in gmatch(header, "[^%s,]+") do
        n = n + 1
        if n > MAX_TAGS then
            log(WARN, "tags: more than ", MAX_TAGS, " tags on ", path,
                "; the rest are not indexed")
            break
        end
        local purged_at = dict:get("at:" .. tag)
        if purged_at and started and purged_at >= started then
            purged_meanwhile = true
        end
        if not indexed then
            local len, err = dict:rpush("t:" .. tag, path)
            if not len then
                generations.reset("failed to index tag " .. tag .. ": "
                                  .. tostring(err))
                return
            end
        end
    end
    if not indexed then
        dict:safe_set("p:" .. path, header)
    end
    if purged_meanwhile then
        generations.purge_path(path)
    end
end


-- The Surrogate-Key the path was last indexed with ("" when it is not indexed:
-- never fetched with tags, or purged by a tag since). For the debug headers.
function _M.indexed(path)
    return dict:get("p:" .. path) or ""
end


-- Bumps every path that carried `tag` and forgets the index entries: the paths
-- index themselves again when they are next fetched. A soft purge keeps them
-- indexed (the stored copies stay in use and must stay purgeable).
function _M.purge(tag, soft)
    local key = "t:" .. tag
    dict:safe_set("at:" .. tag, ngx.now()) -- never evicts the index
    local n = 0
    local keep = {}
    while true do
        local path = dict:lpop(key)
        if not path then
            break
        end
        if soft then
            generations.soft_purge_path(path)
            keep[#keep + 1] = path
        else
            generations.purge_path(path)
            dict:delete("p:" .. path)
        end
        n = n + 1
    end
    for i = 1, #keep do
        dict:rpush(key, keep[i])
    end
    return n
end


return _M
