-- wrk script: send a token whose header names a new random "kid" with every
-- request, the attack that TeleportJWKSMinRefresh limits. Payload and
-- signature are those of a real token; the server must reject each request
-- (unknown_kid) before it checks the signature.
--
-- Arguments after "--": TOKEN_FILE (its first line is the token to reuse)

local bit = require("bit")

local ALPHABET =
   "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
local alphabet_bytes = { ALPHABET:byte(1, 64) }
local rest = nil     -- ".payload.signature" of the token

-- base64url without padding (RFC 4648 section 5).
local function base64url(data)
   local out = {}
   local length = #data
   local i = 1
   while i <= length - 2 do
      local a, b, c = data:byte(i, i + 2)
      local n = bit.bor(bit.lshift(a, 16), bit.lshift(b, 8), c)
      out[#out + 1] = string.char(
         alphabet_bytes[bit.rshift(n, 18) + 1],
         alphabet_bytes[bit.band(bit.rshift(n, 12), 63) + 1],
         alphabet_bytes[bit.band(bit.rshift(n, 6), 63) + 1],
         alphabet_bytes[bit.band(n, 63) + 1])
      i = i + 3
   end
   local remaining = length - i + 1
   if remaining == 2 then
      local a, b = data:byte(i, i + 1)
      local n = bit.bor(bit.lshift(a, 16), bit.lshift(b, 8))
      out[#out + 1] = string.char(
         alphabet_bytes[bit.rshift(n, 18) + 1],
         alphabet_bytes[bit.band(bit.rshift(n, 12), 63) + 1],
         alphabet_bytes[bit.band(bit.rshift(n, 6), 63) + 1])
   elseif remaining == 1 then
      local n = bit.lshift(data:byte(i), 16)
      out[#out + 1] = string.char(
         alphabet_bytes[bit.rshift(n, 18) + 1],
         alphabet_bytes[bit.band(bit.rshift(n, 12), 63) + 1])
   end
   return table.concat(out)
end

-- A kid shaped like Teleport's: 43 base64url characters (a SHA-256).
local function random_kid()
   local characters = {}
   for j = 1, 43 do
      characters[j] = alphabet_bytes[math.random(1, 64)]
   end
   return string.char(unpack(characters))
end

function init(args)
   local path = args[1]
   if path == nil then
      error("random-kid.lua: missing argument TOKEN_FILE after --")
   end
   local file, message = io.open(path, "r")
   if file == nil then
      error("random-kid.lua: cannot read token file: " .. message)
   end
   local token = file:read("*l")
   file:close()
   rest = token and token:match("^[^.]+(%.[^.]+%.[^.]+)$")
   if rest == nil then
      error("random-kid.lua: the first line of " .. path
            .. " is not a compact JWS")
   end
   math.randomseed(os.time() + (tonumber(tostring({}):match("0x(%x+)"), 16)
                                or 0))
end

function request()
   local header = '{"alg":"RS256","kid":"' .. random_kid() .. '","typ":"JWT"}'
   return wrk.format(nil, nil,
                     { ["Teleport-Jwt-Assertion"] = base64url(header) .. rest })
end
