-- Applies purges from the Redis Stream the origin writes (XADD ... purge <json>).
-- One reader per edge (worker 0) follows the stream with XREAD BLOCK from the
-- last id it applied, so a reconnecting edge catches up instead of losing what
-- was published meanwhile (Redis pub/sub would). If the stream was trimmed past
-- that id, or deleted and recreated (its ids may then restart below ours), the
-- edge cannot know what it missed and invalidates everything. This is checked
-- on (re)connecting and after every read, against the id the read started
-- after.
-- After applying, it records the id in the hash `<stream>:applied` (field = edge
-- id) so the origin can report per-edge purge status.
local cjson = require "cjson.safe"
local redis = require "cdn.redis"
local generations = require "cdn.edge.generations"
local tags = require "cdn.edge.tags"
local downloads = require "cdn.edge.downloads"
local stored_paths = require "cdn.edge.stored"
local key = require "cdn.key"

local ipairs = ipairs
local type = type
local tostring = tostring
local tonumber = tonumber
local pcall = pcall
local match = string.match
local floor = math.floor
local min = math.min
local now = ngx.now
local sleep = ngx.sleep
local timer_at = ngx.timer.at
local exiting = ngx.worker.exiting
local log = ngx.log
local ERR = ngx.ERR
local WARN = ngx.WARN
local INFO = ngx.INFO

local _M = { _VERSION = "0.1.0" }

local state = ngx.shared.cdn_state

local BLOCK_MS = 2000
local BATCH = 100
-- On a fresh start the cache was already reset by a new epoch; replaying the last
-- minute covers purges published while this nginx was starting (purges are
-- idempotent, so replaying too much only costs a few misses).
local REPLAY_ON_START_MS = 60000


local function infolog(...)
    log(INFO, "invalidation: ", ...)
end


local function warnlog(...)
    log(WARN, "invalidation: ", ...)
end


local function id_less(a, b)
    local ams, aseq = match(a, "^(%d+)-(%d+)$")
    local bms, bseq = match(b, "^(%d+)-(%d+)$")
    ams, bms = tonumber(ams), tonumber(bms)
    if ams ~= bms then
        return ams < bms
    end
    return tonumber(aseq) < tonumber(bseq)
end


-- Applies one decoded purge message; returns the number of generations bumped.
function _M.apply(msg)
    local n = 0
    if type(msg) ~= "table" then
        return n
    end
    if msg.all == true then
        generations.purge_all()
        return 1
    end
    -- Soft purges keep serving the stored copy until one request refreshed it;
    -- a soft prefix purge cannot name its paths, so it is applied hard.
    local soft = msg.soft == true
    if type(msg.urls) == "table" then
        for _, u in ipairs(msg.urls) do
            local path = key.purge_path(u)
            -- a path that cannot have a stored response costs no counter: purges
            -- of never-fetched URLs must not fill the zone (and force a reset)
            if path and stored_paths.may_exist(path) then
                if soft then
                    generations.soft_purge_path(path)
                else
                    generations.purge_path(path)
                end
                n = n + 1
            end
        end
    end
    if type(msg.prefixes) == "table" then
        for _, p in ipairs(msg.prefixes) do
            local path = key.purge_path(p)
            if path and path:sub(-1) == "/" then
                generations.purge_prefix(path)
                n = n + 1
            end
        end
    end
    if type(msg.tags) == "table" then
        for _, t in ipairs(msg.tags) do
            if type(t) == "string" then
                n = n + tags.purge(t, soft)
            end
        end
    end
    -- revoked download tokens (POST /v1/signed-urls/revoke)
    if type(msg.revoke) == "table" then
        n = n + downloads.revoke(msg.revoke, msg.at)
    end
    return n
end


-- XREAD replies: { { stream, { { id, { field, value, ... } }, ... } } }
local function apply_entries(entries)
    local last
    for _, entry in ipairs(entries) do
        local id, fields = entry[1], entry[2]
        for i = 1, #fields, 2 do
            if fields[i] == "purge" then
                local msg, err = cjson.decode(fields[i + 1])
                if msg then
                    _M.apply(msg)
                    if type(msg.at) == "number" then
                        state:set("lag_seconds", now() - msg.at / 1000)
                    end
                else
                    warnlog("skipping undecodable entry ", id, ": ", err)
                end
            end
        end
        last = id
    end
    return last
end


local function xinfo_field(info, name)
    if type(info) ~= "table" then
        return nil
    end
    for i = 1, #info - 1, 2 do
        if info[i] == name then
            return info[i + 1]
        end
    end
end


-- The id meaning "from the stream's first entry".
local STREAM_START = "0-0"


-- Why the stream can no longer be followed from `last_id` (an entry this edge
-- applied), or nil when it can; and the id to go on from:
--  * the stream is gone, or was recreated (DEL, FLUSHALL, Redis restarted
--    empty) with ids below ours, which XREAD from `last_id` would wait for
--    forever: read the new stream from its start;
--  * entries after ours were deleted (XDEL moves max-deleted-entry-id;
--    trimming does not);
--  * our entry is no longer in the stream: trimmed away (MAXLEN) together
--    with whatever followed it up to the first entry left, which the edge may
--    not have read; or the stream was recreated, which entries older than
--    ours (then from its start) or only newer ones (then from our id) tell.
local function lost_position(red, stream, last_id)
    if last_id == STREAM_START then
        return nil, last_id
    end
    local info, err = red:xinfo("STREAM", stream)
    if not info then
        if match(tostring(err), "no such key") then
            return "stream is gone", STREAM_START
        end
        return nil, last_id -- XREAD will report the connection's trouble
    end
    local generated = xinfo_field(info, "last-generated-id")
    if type(generated) == "string" and id_less(generated, last_id) then
        return "stream recreated (its ids restart below " .. last_id .. ")", STREAM_START
    end
    local deleted = xinfo_field(info, "max-deleted-entry-id")
    if type(deleted) == "string" and id_less(last_id, deleted) then
        return "entries after " .. last_id .. " were deleted", last_id
    end
    local ours = red:xrange(stream, last_id, last_id, "COUNT", 1)
    if type(ours) ~= "table" or #ours > 0 then
        return nil, last_id
    end
    local first = xinfo_field(info, "first-entry")
    if type(first) == "table" and type(first[1]) == "string"
       and id_less(first[1], last_id) then
        return "stream recreated (entry " .. last_id .. " is not in it)", STREAM_START
    end
    return "stream trimmed past " .. last_id .. " (or recreated after it)", last_id
end


-- Checks that the stream could be followed from `from` (the id a read started
-- after; `reached` is where it got to) and returns the id to go on from. When
-- it could not, everything is invalidated first (purges are idempotent:
-- re-reading a new stream from its start is safe).
local function checked_position(red, stream, from, reached)
    local lost, resume = lost_position(red, stream, from)
    if not lost then
        return reached
    end
    if resume ~= STREAM_START and id_less(resume, reached) then
        resume = reached -- what the read applied after the gap stays applied
    end
    warnlog(lost, "; invalidating everything and reading from ", resume)
    generations.purge_all()
    state:set("last_id", resume)
    return resume
end


-- Where the edge acknowledges what it applied: on the connection it reads from,
-- or, when it reads its region's replica (read-only), on a connection to the
-- primary (over TLS: the link crosses regions), opened for the first
-- acknowledgement and kept alive between them. A failed one is retried with the
-- next (the latest id is what counts).
local function acknowledge(ctx, red, last_id)
    local target = red
    if ctx.acknowledge then
        local err
        target, err = redis.open(ctx.acknowledge, ctx.password, 1000)
        if not target then
            return nil, "failed to reach the primary: " .. tostring(err)
        end
    end
    local ok, err = target:hset(ctx.stream .. ":applied", ctx.edge_id, last_id)
    if ctx.acknowledge and ok then
        target:set_keepalive(60000, 1)
    end
    return ok, err
end


local function follow(ctx)
    local red = redis:new()
    red:set_timeouts(1000, 1000, BLOCK_MS + 1000)
    local ok, err = red:connect(ctx.redis.host, ctx.redis.port)
    if not ok then
        return nil, "failed to connect to redis: " .. tostring(err)
    end
    if ctx.password then
        ok, err = red:auth(ctx.password)
        if not ok then
            return nil, "failed to authenticate to redis: " .. tostring(err)
        end
    end

    -- revocations older than the replayed stream, once per start
    if not state:get("revocations_loaded") then
        local n, lerr = downloads.load_revocations(red, ctx.stream .. ":revocations")
        if not n then
            return nil, "failed to load download revocations: " .. tostring(lerr)
        end
        state:set("revocations_loaded", 1)
        if n > 0 then
            infolog("loaded ", n, " download revocations")
        end
    end

    local last_id = state:get("last_id")
    -- only an id the edge applied can be looked for in the stream
    local applied_any = last_id ~= nil
    if not applied_any then
        last_id = floor(ctx.started_ms - REPLAY_ON_START_MS) .. "-0"
    else
        last_id = checked_position(red, ctx.stream, last_id, last_id)
    end
    state:set("connected", 1)
    infolog("following ", ctx.stream, " from ", last_id)

    while not exiting() do
        local from, verifiable = last_id, applied_any
        local res, rerr = red:xread("COUNT", BATCH, "BLOCK", BLOCK_MS,
                                    "STREAMS", ctx.stream, from)
        if not res then
            return nil, "failed to read stream: " .. tostring(rerr)
        end
        if res ~= ngx.null and res[1] then
            local applied = apply_entries(res[1][2])
            if applied then
                last_id, applied_any = applied, true
                state:set("last_id", last_id)
                state:incr("applied_total", #res[1][2], 0)
                local hok, herr = acknowledge(ctx, red, last_id)
                if not hok then
                    warnlog("failed to acknowledge ", last_id, ": ", herr)
                end
            end
        else
            state:set("lag_seconds", 0)
        end
        -- After every read (after applying it: no purge waits for this): were
        -- entries after `from` trimmed before they were read, or was the stream
        -- recreated (with lower ids XREAD would wait forever)?
        if verifiable then
            last_id = checked_position(red, ctx.stream, from, last_id)
        end
        state:set("last_contact", now())
        -- Re-asserted after every read: after a reload, the old worker 0 may
        -- still write 0 on its way out while the new reader is already running.
        state:set("connected", 1)
    end
    red:set_keepalive(10000, 1)
    return true
end


local loop

loop = function(premature, ctx)
    if premature or exiting() then
        return
    end
    local ok, res, err = pcall(follow, ctx)
    if not exiting() then
        state:set("connected", 0)
    end
    if not ok then
        log(ERR, "invalidation: reader crashed: ", res)
    elseif not res then
        warnlog(err)
    end
    if exiting() then
        return
    end
    ctx.backoff = (ok and res) and 0 or min((ctx.backoff or 0.25) * 2, 5)
    sleep(ctx.backoff)
    local tok, terr = timer_at(0, loop, ctx)
    if not tok then
        log(ERR, "invalidation: failed to reschedule reader: ", terr)
    end
end


-- Starts the reader in worker 0 only: one stream position per edge.
-- Seconds since the edge last heard from the bus while it is cut off, else 0.
-- Also how stale an invalidation could be: purges published meanwhile are
-- not applied yet.
function _M.disconnected_for()
    if (state:get("connected") or 0) == 1 then
        return 0
    end
    local last = state:get("last_contact") or state:get("started")
    return last and (now() - last) or 0
end


function _M.start(settings)
    if ngx.worker.id() ~= 0 then
        return
    end
    local ctx = {
        redis = settings.redis,
        acknowledge = settings.acknowledge,
        password = settings.redis_password,
        stream = settings.stream,
        edge_id = settings.id,
        started_ms = now() * 1000,
    }
    state:safe_add("started", now())
    local ok, err = timer_at(0, loop, ctx)
    if not ok then
        log(ERR, "invalidation: failed to start reader: ", err)
    end
end


return _M
