-- Which paths may have a stored response, so that invalidations caused by
-- traffic (a successful POST/PUT/DELETE/PATCH, its Location) cost a generation
-- counter only for paths the cache can actually hold. Without it, unsafe
-- requests to many distinct never-fetched paths (a form endpoint, an external
-- API) would each create a counter, fill `cdn_gens` and force a zone reset: a
-- new epoch, i.e. a miss storm over the whole cache.
--
-- lua_shared_dict `cdn_stored`:
--   "p:<path>"   a response for the path was stored. Written with safe_add
--                only: an evicted entry would let a later POST skip the
--                invalidation and resurrect a stale response.
--   "overflowed" 0 until the set could not take another path; from then on
--                every path counts as stored (the old behaviour, always
--                correct) until a zone reset empties the set.
--   "unsure_until" while now is before it, every path counts as stored: a
--                fetch could not be marked in flight (see below).
-- lua_shared_dict `cdn_fetching`:
--   "<path>"     a GET for the path is on its way to the origin. A response
--                the origin generated before a write, but stored after the
--                write's invalidation looked for it, would otherwise survive
--                it; marking the fetch before it leaves closes that window.
--                Markers expire once the response headers must have arrived.
-- Both are emptied by a zone reset (generations.reset), whose new epoch makes
-- every earlier stored response unreachable anyway. Without the zones (an
-- nginx.conf that does not declare them) every path counts as stored.
local now = ngx.now

local _M = { _VERSION = "0.1.0" }

local stored = ngx.shared.cdn_stored
local fetching = ngx.shared.cdn_fetching

local OVERFLOWED = "overflowed"
local UNSURE_UNTIL = "unsure_until"
-- Longer than a fetch can wait for its response headers (connect 2 s + read 30 s
-- at the public server, see edge/render.ts).
local FETCH_MARK_SECONDS = 35


-- Creates the bookkeeping entries (init_by_lua, and after a reset), so later
-- updates replace numbers in place and never need memory the set used up.
function _M.init()
    if stored then
        stored:safe_add(OVERFLOWED, 0)
        stored:safe_add(UNSURE_UNTIL, 0)
    end
end


-- Empties both zones (the zone reset already made every stored key unreachable).
local function empty(dict)
    if dict then
        dict:flush_all()
        dict:flush_expired()
    end
end


function _M.reset()
    empty(stored)
    empty(fetching)
    _M.init()
end


-- Every path counts as stored: the set is incomplete.
local function incomplete()
    -- a missing flag (mid-reset) counts as set: safe
    return (stored:get(OVERFLOWED) or 1) ~= 0
           or (stored:get(UNSURE_UNTIL) or now()) >= now()
end


-- A GET for `path` goes to the origin (the internal fetch hop: misses only).
function _M.fetching(path)
    if not fetching then
        return
    end
    if not fetching:safe_set(path, true, FETCH_MARK_SECONDS) then
        -- cannot be marked: for as long as this fetch may take, count every
        -- path as stored
        stored:safe_set(UNSURE_UNTIL, now() + FETCH_MARK_SECONDS)
    end
end


-- A response for `path` was fetched and stored.
function _M.record(path)
    if not stored or (stored:get(OVERFLOWED) or 1) ~= 0 then
        return
    end
    local ok, err = stored:safe_add("p:" .. path, true)
    if not ok and err ~= "exists" then
        stored:incr(OVERFLOWED, 1, 1)
    end
end


-- True when `path` may have a stored response (or one on its way), i.e. when a
-- write to it must invalidate it.
function _M.may_exist(path)
    if not stored or not fetching then
        return true
    end
    return incomplete() or stored:get("p:" .. path) ~= nil
           or fetching:get(path) ~= nil
end


return _M
