-- wrk script: send each request with the next token of a token file, one
-- token a line, starting again at the first after the last.
--
-- Arguments after "--": TOKEN_FILE [HEADER [MAX_REQUESTS]]
--   HEADER        request header for the token (default
--                 Teleport-Jwt-Assertion); for Authorization the value is
--                 "Bearer <token>"
--   MAX_REQUESTS  stop after this many responses (default 0: run for the
--                 whole -d duration); counted per wrk thread, so use -t1
--
-- Requests are formatted once in init(), so that the client's per-request
-- work is the same as for a fixed token.

local requests = {}
local next_index = 1
local max_requests = 0
local responses = 0

function init(args)
   local path = args[1]
   local header = args[2] or "Teleport-Jwt-Assertion"
   if path == nil then
      error("rotate-tokens.lua: missing argument TOKEN_FILE after --")
   end
   local prefix = ""
   if header:lower() == "authorization" then
      prefix = "Bearer "
   end

   local file, message = io.open(path, "r")
   if file == nil then
      error("rotate-tokens.lua: cannot read token file: " .. message)
   end
   for line in file:lines() do
      if line ~= "" then
         requests[#requests + 1] =
            wrk.format(nil, nil, { [header] = prefix .. line })
      end
   end
   file:close()
   if #requests == 0 then
      error("rotate-tokens.lua: no tokens in " .. path)
   end

   max_requests = tonumber(args[3] or "0")
   if max_requests == nil or max_requests < 0 then
      error("rotate-tokens.lua: MAX_REQUESTS must be a number >= 0, not "
            .. tostring(args[3]))
   end
   -- wrk passes response headers and bodies to Lua only when a
   -- response() function exists. That costs client time, so the function
   -- is defined only when responses have to be counted.
   if max_requests > 0 then
      response = function(status, headers, body)
         responses = responses + 1
         if responses >= max_requests then
            wrk.thread:stop()
         end
      end
   end
end

function request()
   local formatted = requests[next_index]
   next_index = next_index % #requests + 1
   return formatted
end
