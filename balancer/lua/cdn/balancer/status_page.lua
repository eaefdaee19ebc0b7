-- The traffic status page: one HTML document (status_page.html beside this
-- file) with its CSS and JS inline (no other origin, no other file), showing the
-- same document as /status.json and refreshing it once a second. The first paint
-- uses the document embedded at render time, so the page is readable before its
-- script has fetched anything. The file is read once, when nginx loads its Lua.
local open = io.open
local find = string.find
local sub = string.sub
local gsub = string.gsub
local searchpath = package.searchpath
local error = error

local _M = { _VERSION = "0.1.0" }

local MARKER = "<!--STATUS-JSON-->"

local head, tail
do
    local module_file = searchpath("cdn.balancer.status_page", package.path)
    if not module_file then
        error("failed to locate cdn.balancer.status_page on package.path")
    end
    local file = gsub(module_file, "%.lua$", ".html")
    local f, err = open(file, "r")
    if not f then
        error("failed to open the status page template: " .. err)
    end
    local html = f:read("*a")
    f:close()
    local at = find(html, MARKER, 1, true)
    if not at then
        error("failed to find " .. MARKER .. " in " .. file)
    end
    head = sub(html, 1, at - 1)
    tail = sub(html, at + #MARKER)
end


-- doc_json: the status document, embedded for the first paint.
function _M.render(doc_json)
    -- "</" would end the script element early
    return head .. gsub(doc_json, "</", "<\\/") .. tail
end


return _M
