-- wrk script for the refresh-token grant with rotation followed: every request spends one refresh
-- token from this thread's share of the pool and puts back the one it receives, so no token is
-- ever sent twice. Arguments: CLIENT_ID POOL_FILE THREADS.

local pool = {}
local client_id
local thread_count = 0

function setup(thread)
  thread:set("id", thread_count)
  thread_count = thread_count + 1
end

function init(args)
  client_id = args[1]
  local threads = tonumber(args[3])
  local index = 0
  for line in io.lines(args[2]) do
    if index % threads == id then
      table.insert(pool, line)
    end
    index = index + 1
  end
end

function request()
  -- An empty pool would mean more requests in flight than tokens: send a token that cannot work,
  -- which wrk counts as a non-2xx response and the report flags.
  local token = table.remove(pool) or "exhausted"
  return wrk.format("POST", "/token", { ["Content-Type"] = "application/x-www-form-urlencoded" },
    "grant_type=refresh_token&client_id=" .. client_id .. "&refresh_token=" .. token)
end

function response(status, headers, body)
  local token = body:match('"refresh_token":"([^"]+)"')
  if token then
    table.insert(pool, token)
  end
end
