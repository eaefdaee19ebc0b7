-- Lua style: see ../shared/design/style.md §1 (cached locals, no globals).
std             = "ngx_lua"
redefined       = false
max_line_length = 100
