-- POST /v1/login with a fresh mock code per request (the fake runs with --mock-codes).
-- Users repeat, so most logins are returning users, as in real traffic.
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

-- args[1]: a tag of this wrk process, so that two run at once never send the same code.
function init(args)
  prefix = (args[1] or "") .. tostring(tid) .. "." .. tostring(os.time())
  counter = 0
end

request = function()
  counter = counter + 1
  local user = "u" .. math.random(1, 20000)
  local body = '{"code":"mock-' .. user .. '-' .. prefix .. '.' .. counter .. '"}'
  return wrk.format("POST", "/v1/login", { ["Content-Type"] = "application/json" }, body)
end
