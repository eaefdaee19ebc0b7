-- Lua style: see docs/design-notes.md §4 (cached locals, no globals).
std             = "ngx_lua"
redefined       = false
max_line_length = 100
