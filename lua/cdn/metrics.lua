-- Prometheus counters and histograms kept in a lua_shared_dict, rendered as text
-- exposition. nginx-lua-prometheus is not packaged for Debian, so this is the
-- ~100 lines it would have given us. Series keys are the full exposition line
-- prefix (`name{labels}`), so rendering is a sort and a loop.
local concat = table.concat
local sort = table.sort
local find = string.find
local sub = string.sub
local format = string.format
local gsub = string.gsub
local ipairs = ipairs
local pairs = pairs
local tostring = tostring
local error = error
local setmetatable = setmetatable
local log = ngx.log
local WARN = ngx.WARN

local _M = { _VERSION = "0.1.0" }
local mt = { __index = _M }



local function label_value(v)
    v = tostring(v)
    if find(v, '["\\\n]') then
        v = gsub(gsub(gsub(v, "\\", "\\\\"), "\n", "\\n"), '"', '\\"')
    end
    return v
end


-- labels: array of names; values: array of values in the same order
local function series(name, labels, values)
    if not labels or #labels == 0 then
        return name
    end
    local parts = {}
    for i, l in ipairs(labels) do
        parts[i] = l .. '="' .. label_value(values[i]) .. '"'
    end
    return name .. "{" .. concat(parts, ",") .. "}"
end


-- latency_buckets: the default bounds of histograms, in seconds. Every layer uses
-- the same ones (origin/contract/metrics.ts), which the renderers put in each
-- service's settings, so histograms aggregate across origin, edges and balancer.
function _M.new(dict_name, latency_buckets)
    local dict = ngx.shared[dict_name]
    if not dict then
        return nil, "no such lua_shared_dict: " .. tostring(dict_name)
    end
    return setmetatable({ dict = dict, meta = {}, order = {},
                          latency_buckets = latency_buckets }, mt)
end


function _M:register(name, kind, help, labels, buckets)
    if self.meta[name] then
        error("metric registered twice: " .. name, 2)
    end
    self.meta[name] = { kind = kind, help = help, labels = labels or {},
                        buckets = buckets }
    self.order[#self.order + 1] = name
    return name
end


function _M:counter(name, help, labels)
    return self:register(name, "counter", help, labels)
end


function _M:gauge(name, help, labels)
    return self:register(name, "gauge", help, labels)
end


function _M:histogram(name, help, labels, buckets)
    buckets = buckets or self.latency_buckets
    if not buckets then
        error("histogram " .. name .. " needs buckets: none given, and no latency buckets", 2)
    end
    return self:register(name, "histogram", help, labels, buckets)
end


local function incr(dict, key, n)
    local _, err, forcible = dict:incr(key, n, 0)
    if err then
        log(WARN, "metrics: failed to increment ", key, ": ", err)
    elseif forcible then
        log(WARN, "metrics: shared dict full, older series were evicted")
    end
end


function _M:inc(name, n, values)
    incr(self.dict, series(name, self.meta[name].labels, values), n or 1)
end


function _M:set(name, v, values)
    self.dict:set(series(name, self.meta[name].labels, values), v)
end


-- Buckets are stored non-cumulative (one increment per observation) and summed
-- when rendered.
-- The upper bound of the bucket `v` falls in.
local function bucket_for(buckets, v)
    for i = 1, #buckets do
        if v <= buckets[i] then
            return buckets[i]
        end
    end
    return "+Inf"
end


function _M:observe(name, v, values)
    local m = self.meta[name]
    local le = bucket_for(m.buckets, v)
    local dict = self.dict
    local base = series(name, m.labels, values)
    incr(dict, base .. "\0le\0" .. le, 1)
    incr(dict, base .. "\0sum", v)
    incr(dict, base .. "\0count", 1)
end


-- Buffered updates for hot paths: they add to a per-worker table, and flush()
-- (from a timer, or before rendering) applies the sums to the shared dict. One
-- request then costs table updates instead of several locked dict operations.
local function buffer_add(self, key, n)
    local buf = self.buf
    if not buf then
        buf = {}
        self.buf = buf
    end
    buf[key] = (buf[key] or 0) + n
end


function _M:inc_buffered(name, n, values)
    buffer_add(self, series(name, self.meta[name].labels, values), n or 1)
end


function _M:observe_buffered(name, v, values)
    local m = self.meta[name]
    local le = bucket_for(m.buckets, v)
    local base = series(name, m.labels, values)
    buffer_add(self, base .. "\0le\0" .. le, 1)
    buffer_add(self, base .. "\0sum", v)
    buffer_add(self, base .. "\0count", 1)
end


-- The dict key of one series, for hot paths that compute it once and then use
-- inc_series_buffered / observe_series_buffered.
function _M:series_key(name, values)
    return series(name, self.meta[name].labels, values)
end


function _M:inc_series_buffered(key, n)
    buffer_add(self, key, n or 1)
end


-- `key` is series_key(name, values) of a histogram; its bucket keys are built
-- once and kept.
function _M:observe_series_buffered(name, key, v)
    local hkeys = self.hkeys
    if not hkeys then
        hkeys = {}
        self.hkeys = hkeys
    end
    local k = hkeys[key]
    local buckets = self.meta[name].buckets
    if not k then
        k = { le = {}, inf = key .. "\0le\0+Inf", sum = key .. "\0sum",
              count = key .. "\0count" }
        for i = 1, #buckets do
            k.le[i] = key .. "\0le\0" .. buckets[i]
        end
        hkeys[key] = k
    end
    local le = k.inf
    for i = 1, #buckets do
        if v <= buckets[i] then
            le = k.le[i]
            break
        end
    end
    buffer_add(self, le, 1)
    buffer_add(self, k.sum, v)
    buffer_add(self, k.count, 1)
end


-- Applies buffered updates; returns how many series were touched.
function _M:flush()
    local buf = self.buf
    if not buf then
        return 0
    end
    self.buf = nil
    local dict, n = self.dict, 0
    for key, v in pairs(buf) do
        incr(dict, key, v)
        n = n + 1
    end
    return n
end


-- The stored value of a counter or gauge series (0 when absent).
function _M:get(name, values)
    return self.dict:get(series(name, self.meta[name].labels, values)) or 0
end


-- A histogram series' totals: count, sum and per-bucket (non-cumulative) counts
-- indexed like m.buckets, with the overflow bucket last.
function _M:histogram_values(name, values)
    local m = self.meta[name]
    local dict = self.dict
    local base = series(name, m.labels, values)
    local counts = {}
    for i, b in ipairs(m.buckets) do
        counts[i] = dict:get(base .. "\0le\0" .. b) or 0
    end
    counts[#m.buckets + 1] = dict:get(base .. "\0le\0+Inf") or 0
    return dict:get(base .. "\0count") or 0, dict:get(base .. "\0sum") or 0, counts
end


local function with_le(base, le)
    local brace = find(base, "{", 1, true)
    if not brace then
        return base .. '_bucket{le="' .. le .. '"}'
    end
    return sub(base, 1, brace - 1) .. '_bucket{' .. sub(base, brace + 1, -2)
           .. ',le="' .. le .. '"}'
end


local function with_suffix(base, suffix)
    local brace = find(base, "{", 1, true)
    if not brace then
        return base .. suffix
    end
    return sub(base, 1, brace - 1) .. suffix .. sub(base, brace)
end


local function render_histogram(out, m, keys, dict)
    -- group the stored keys by their series (everything before the first NUL)
    local groups, names = {}, {}
    for _, k in ipairs(keys) do
        local nul = find(k, "\0", 1, true)
        local base = sub(k, 1, nul - 1)
        local g = groups[base]
        if not g then
            g = { le = {} }
            groups[base] = g
            names[#names + 1] = base
        end
        local rest = sub(k, nul + 1)
        if rest == "sum" then
            g.sum = dict:get(k)
        elseif rest == "count" then
            g.count = dict:get(k)
        else
            g.le[sub(rest, 4)] = dict:get(k)
        end
    end
    sort(names)
    for _, base in ipairs(names) do
        local g = groups[base]
        local cumulative = 0
        for _, b in ipairs(m.buckets) do
            cumulative = cumulative + (g.le[tostring(b)] or 0)
            out[#out + 1] = with_le(base, tostring(b)) .. " " .. cumulative
        end
        cumulative = cumulative + (g.le["+Inf"] or 0)
        out[#out + 1] = with_le(base, "+Inf") .. " " .. cumulative
        out[#out + 1] = with_suffix(base, "_sum") .. " "
                        .. format("%.6f", g.sum or 0)
        out[#out + 1] = with_suffix(base, "_count") .. " " .. (g.count or 0)
    end
end


-- Text exposition format 0.0.4.
function _M:render()
    local dict = self.dict
    local keys = dict:get_keys(0)
    sort(keys)
    local by_name = {}
    for _, k in ipairs(keys) do
        local stop = find(k, "[{%z]")
        local name = stop and sub(k, 1, stop - 1) or k
        local list = by_name[name]
        if not list then
            list = {}
            by_name[name] = list
        end
        list[#list + 1] = k
    end
    local out = {}
    for _, name in ipairs(self.order) do
        local m = self.meta[name]
        out[#out + 1] = "# HELP " .. name .. " " .. m.help
        out[#out + 1] = "# TYPE " .. name .. " " .. m.kind
        local list = by_name[name] or {}
        if m.kind == "histogram" then
            render_histogram(out, m, list, dict)
        else
            for _, k in ipairs(list) do
                local v = dict:get(k)
                if v then
                    out[#out + 1] = k .. " " .. tostring(v)
                end
            end
        end
    end
    out[#out + 1] = ""
    return concat(out, "\n")
end


-- A gauge family computed at scrape time instead of kept in the shared dict,
-- for values whose label sets come and go (a series that is gone must vanish).
-- samples: array of { values, value }, values in the order of `labels`.
function _M.render_gauge(name, help, labels, samples)
    local out = { "# HELP " .. name .. " " .. help, "# TYPE " .. name .. " gauge" }
    for _, s in ipairs(samples) do
        out[#out + 1] = series(name, labels, s[1]) .. " " .. format("%.17g", s[2])
    end
    out[#out + 1] = ""
    return concat(out, "\n")
end


-- Exposes the registry at the current location (content phase).
function _M:serve()
    ngx.header["Content-Type"] = "text/plain; version=0.0.4; charset=utf-8"
    ngx.print(self:render())
end


return _M
