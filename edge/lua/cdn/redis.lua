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

-- A connection over TLS, verified: the server's certificate must chain to
-- lua_ssl_trusted_certificate and name server_name (it is dialled by address).
-- 0.27's connect takes no ssl option, so the handshake is made on its socket;
-- a connection the keepalive pool hands back is encrypted already. Debian's
-- lua-resty-core (0.1.25) asserts, rather than returns an error, when a handshake
-- that had to wait fails: pcall turns that into the error it is.
if not rawget(redis, "connect_tls") then
    redis.connect_tls = function(self, host, port, server_name)
        local ok, err = self:connect(host, port)
        if not ok or self:get_reused_times() > 0 then
            return ok, err
        end
        local sock = rawget(self, "_sock")
        local called, session, herr = pcall(sock.sslhandshake, sock, nil, server_name, true)
        if not called then
            session, herr = nil, "certificate not accepted (see the error log)"
        end
        if not session then
            sock:close()
            return nil, "TLS handshake failed: " .. tostring(herr)
        end
        return ok
    end
end

-- A connection to `target` ({ host, port, tls = { serverName }? }), over TLS
-- when the target says so, authenticated once (a pooled connection already
-- is); every timeout `timeout_ms`. Returns the client, or nil and the error.
if not rawget(redis, "open") then
    redis.open = function(target, password, timeout_ms)
        local red = redis:new()
        red:set_timeouts(timeout_ms, timeout_ms, timeout_ms)
        local ok, err
        if target.tls then
            ok, err = red:connect_tls(target.host, target.port, target.tls.serverName)
        else
            ok, err = red:connect(target.host, target.port)
        end
        if ok and password and red:get_reused_times() == 0 then
            ok, err = red:auth(password)
        end
        if not ok then
            return nil, err
        end
        return red
    end
end

return redis
