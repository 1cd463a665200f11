-- wrk script for the refresh-token grant by a client that authenticates with private_key_jwt:
-- like refresh.lua (rotation followed, no refresh token sent twice), and each request carries a
-- fresh pre-signed assertion, each used once. Arguments: CLIENT_ID POOL_FILE ASSERTIONS_FILE THREADS.

local pool = {}
local assertions = {}
local client_id
local thread_count = 0
local assertion_type = "urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer"

function setup(thread)
  thread:set("id", thread_count)
  thread_count = thread_count + 1
end

local function share(file, threads, into)
  local index = 0
  for line in io.lines(file) do
    if index % threads == id then
      table.insert(into, line)
    end
    index = index + 1
  end
end

function init(args)
  client_id = args[1]
  local threads = tonumber(args[4])
  share(args[2], threads, pool)
  share(args[3], threads, assertions)
end

function request()
  -- An empty pool sends what cannot work; wrk counts it as non-2xx and the report flags it.
  local token = table.remove(pool) or "exhausted"
  local assertion = table.remove(assertions) or "exhausted"
  return wrk.format("POST", "/token", { ["Content-Type"] = "application/x-www-form-urlencoded" },
    "grant_type=refresh_token&client_id=" .. client_id .. "&refresh_token=" .. token ..
    "&client_assertion_type=" .. assertion_type .. "&client_assertion=" .. assertion)
end

function response(status, headers, body)
  local token = body:match('"refresh_token":"([^"]+)"')
  if token then
    table.insert(pool, token)
  end
end
