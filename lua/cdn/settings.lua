-- Reads the JSON settings file a renderer wrote for this nginx instance. Called
-- from init_by_lua, so a broken file stops nginx at start with a clear message.
local cjson = require "cjson.safe"
local open = io.open
local error = error

local _M = { _VERSION = "0.1.0" }


function _M.load(path)
    local f, err = open(path, "r")
    if not f then
        error("failed to open settings " .. path .. ": " .. err, 2)
    end
    local text = f:read("*a")
    f:close()
    local decoded, derr = cjson.decode(text)
    if not decoded then
        error("failed to parse settings " .. path .. ": " .. derr, 2)
    end
    return decoded
end


-- Reads a secret (first line, trimmed) from a file the renderer pointed at, so the
-- secret itself never appears in rendered settings or logs.
function _M.read_secret(path)
    local f, err = open(path, "r")
    if not f then
        error("failed to open secret file " .. path .. ": " .. err, 2)
    end
    local line = f:read("*l") or ""
    f:close()
    return (line:gsub("^%s+", ""):gsub("%s+$", ""))
end


return _M
