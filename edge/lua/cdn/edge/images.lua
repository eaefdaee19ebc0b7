-- Image variant requests: the query grammar `w`, `h`, `fit`, `q`, `fmt`, `dpr`
-- (docs/images.md) reduced to one canonical query, the only one that reaches
-- the cache key and the origin. Unknown parameters are dropped (the CDN's own
-- origin ignores them), widths and heights snap up to the configured widths and
-- qualities to the configured steps, so a crawler cannot create unbounded
-- variants. Other values need a signed URL (`kid`, `sig`, optional `exp`),
-- verified here before anything is looked up or fetched.
--
-- Called by edge.lua's key lookup only when a request's signature is first
-- seen (the result is memoised with the key), so the hit path never parses a
-- query.
local signature = require "cdn.edge.signature"

local decode_args = ngx.decode_args
local concat = table.concat
local find = string.find
local ceil = math.ceil
local floor = math.floor
local min = math.min
local tonumber = tonumber
local type = type
local pairs = pairs

local _M = { _VERSION = "0.1.0" }

local MAX_ARGS = 64
-- The most any side of a variant can be, signed or not (the origin's limit too).
local MAX_SIDE = 8192
local CLOCK_SKEW = signature.CLOCK_SKEW

local FORMATS = { auto = true, avif = true, webp = true, jpeg = true, png = true }
local FITS = { cover = true, contain = true, inside = true }
-- Parameters of the grammar, and those a signature adds.
local PARAMS = { w = true, h = true, fit = true, q = true, fmt = true, dpr = true }
local SIGNED = { exp = true, kid = true }

local enabled = false
local widths, qualities, default_quality


-- init_by_lua: the spec's `images` section (edge/render.ts); the signing keys
-- are read by signature.init (edge.lua).
function _M.init(s)
    if not s or not s.enabled then
        enabled = false
        return
    end
    enabled = true
    widths, qualities, default_quality = s.widths, s.qualities, s.defaultQuality
end


function _M.enabled()
    return enabled
end


-- The smallest of `steps` (sorted) at least `n`, else the largest.
local function snap(steps, n)
    for i = 1, #steps do
        if steps[i] >= n then
            return steps[i]
        end
    end
    return steps[#steps]
end


local function integer(v, lo, hi)
    local n = tonumber(v)
    if not n or n ~= floor(n) or n < lo or n > hi then
        return nil
    end
    return n
end


-- The Accept class of a variant whose format is picked by Accept (fmt=auto):
-- the class, and the Accept value the origin gets (so nginx's Vary check
-- compares one of three values, whatever the browser sent).
function _M.accept_class(accept)
    if accept then
        -- (WebP stays in: the origin falls back to it for variants too large
        -- to encode as AVIF quickly, and every browser with AVIF has WebP)
        if find(accept, "image/avif", 1, true) then
            return "avif", "image/avif,image/webp,*/*"
        end
        if find(accept, "image/webp", 1, true) then
            return "webp", "image/webp,*/*"
        end
    end
    return "any", "*/*"
end


-- A request's image query. Returns the canonical query ("" for the original
-- bytes), whether the format follows Accept, and the signed URL's expiry (or
-- nil); or nil, the HTTP status (400, 403) and the reason. `checked`: the
-- signature was verified for this request already (the fetch hop, after the
-- public server's key lookup), only the canonical form is wanted.
function _M.query(path, args, checked)
    if not args or args == "" then
        return ""
    end
    local given = decode_args(args, MAX_ARGS)
    local p, any = {}, false
    for name, value in pairs(given) do
        if PARAMS[name] or SIGNED[name] or name == "sig" then
            if type(value) ~= "string" or not find(value, "^[%w.]+$") then
                return nil, 400,
                       name .. " must be given once, with a value of letters, digits or '.'"
            end
            p[name] = value
            any = any or PARAMS[name] ~= nil
        end
    end
    if not any or not (p.w or p.h or p.q or p.fmt) then
        return ""
    end

    local signed = p.sig ~= nil
    local exp
    if signed and not checked then
        -- the message: the path and the grammar's parameters as sent, so a
        -- signer needs no knowledge of defaults or snapping
        local ok, why = signature.verify_fields("", path, p)
        if not ok then
            return nil, 403, "image URL signature: " .. why
        end
        if p.exp then
            exp = integer(p.exp, 0, 1e12)
            if not exp then
                return nil, 400, "exp must be a Unix time in seconds"
            end
            if ngx.time() > exp + CLOCK_SKEW then
                return nil, 403, "image URL signature: expired"
            end
        end
    end

    local w, h = p.w and integer(p.w, 1, MAX_SIDE), p.h and integer(p.h, 1, MAX_SIDE)
    if (p.w and not w) or (p.h and not h) then
        return nil, 400, "w and h must be whole numbers of pixels from 1 to " .. MAX_SIDE
    end
    local dpr = 1
    if p.dpr then
        dpr = tonumber(p.dpr)
        if not dpr or dpr < 1 or dpr > 3 then
            return nil, 400, "dpr must be a number from 1 to 3"
        end
    end
    local q = default_quality
    if p.q then
        q = integer(p.q, 1, 100)
        if not q then
            return nil, 400, "q must be a whole number from 1 to 100"
        end
        if not signed then
            q = snap(qualities, q)
        end
    end
    local fmt = p.fmt or "auto"
    if not FORMATS[fmt] then
        return nil, 400, "fmt must be auto, avif, webp, jpeg or png"
    end
    local fit = p.fit or "cover"
    if not FITS[fit] then
        return nil, 400, "fit must be cover, contain or inside"
    end

    -- device pixels: the width asked for times the density, snapped up to a
    -- configured width (signed URLs get exactly what they name); a height
    -- with a width keeps the asked aspect ratio, alone it snaps the same way
    local out_w, out_h
    if w then
        out_w = min(ceil(w * dpr), MAX_SIDE)
        if not signed then
            out_w = snap(widths, out_w)
        end
    end
    if h then
        if out_w then
            out_h = min(MAX_SIDE, floor(h * out_w / w + 0.5))
            if out_h < 1 then
                out_h = 1
            end
            -- derived, then snapped like any height: unsigned, a width has at
            -- most #widths heights, not one per pixel
            if not signed then
                out_h = snap(widths, out_h)
            end
        else
            out_h = min(ceil(h * dpr), MAX_SIDE)
            if not signed then
                out_h = snap(widths, out_h)
            end
        end
    end

    -- names in sorted order: fit (only with both sides), fmt, h, q, w
    local parts, n = {}, 0
    if out_w and out_h then
        n = n + 1
        parts[n] = "fit=" .. fit
    end
    n = n + 1
    parts[n] = "fmt=" .. fmt
    if out_h then
        n = n + 1
        parts[n] = "h=" .. out_h
    end
    n = n + 1
    parts[n] = "q=" .. q
    if out_w then
        n = n + 1
        parts[n] = "w=" .. out_w
    end
    return concat(parts, "&"), fmt == "auto", exp
end

return _M
