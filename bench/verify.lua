-- GET /v1/session with a random valid token from $TOKENS per request.
local tokens = {}
local path = os.getenv("TOKENS")
for line in io.lines(path) do tokens[#tokens + 1] = line end
local n = #tokens
request = function()
  return wrk.format("GET", "/v1/session", { Authorization = "Bearer " .. tokens[math.random(n)] })
end
