-- One place that knows where the Redis client lives: OpenResty ships it as
-- "resty.redis", Debian's lua-nginx-redis package as "nginx.redis" (0.27). The
-- API is lua-resty-redis's, so everything else requires "cdn.redis".
local rawget = rawget
local max = math.max

local ok, redis = pcall(require, "resty.redis")
if not ok then
    redis = require "nginx.redis"
end

-- 0.27 predates set_timeouts; unknown methods become Redis commands there, so a
-- missing one would be sent to the server instead of failing loudly.
if not rawget(redis, "set_timeouts") then
    redis.set_timeouts = function(self, connect, send, read)
        return self:set_timeout(max(connect, send, read))
    end
end

return redis
