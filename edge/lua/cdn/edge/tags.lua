-- Tag (Surrogate-Key) index: which paths carried a tag when they were fetched, so
-- a tag purge can bump the generation of exactly those paths (as Varnish xkey does
-- with a secondary index). Lists are appended with rpush, which is atomic across
-- workers and fails instead of evicting; a full zone falls back to a global purge.
local gmatch = string.gmatch
local log = ngx.log
local WARN = ngx.WARN

local generations = require "cdn.edge.generations"

local _M = { _VERSION = "0.1.0" }

local dict = ngx.shared.cdn_tags

local MAX_TAGS = 64


-- Called when a response was fetched from upstream (not on hits).
function _M.record(path, header)
    if not header or header == "" then
        return
    end
    if dict:get("p:" .. path) == header then
        return -- already indexed with the same tags
    end
    local n = 0
    for tag in gmatch(header, "[^%s,]+") do
        n = n + 1
        if n > MAX_TAGS then
            break
        end
        local len, err = dict:rpush("t:" .. tag, path)
        if not len then
            log(WARN, "tags: failed to index tag ", tag, " (", err,
                "); invalidating everything instead")
            generations.purge_all()
            return
        end
    end
    dict:safe_set("p:" .. path, header)
end


-- Bumps every path that carried `tag` (or soft-purges it) and forgets the index
-- entries: the paths index themselves again when they are next fetched.
function _M.purge(tag, soft)
    local key = "t:" .. tag
    local n = 0
    while true do
        local path = dict:lpop(key)
        if not path then
            break
        end
        if soft then
            generations.soft_purge_path(path)
        else
            generations.purge_path(path)
        end
        dict:delete("p:" .. path)
        n = n + 1
    end
    return n
end


return _M
