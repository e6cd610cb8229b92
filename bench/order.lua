-- POST /v1/pay/orders {"product":"vip30"} with a random valid session token from $TOKENS:
-- each places an order at the fake WeChat Pay (a signed JSAPI call, its signed answer
-- verified) and answers the signed wx.requestPayment parameters.
local tokens = {}
for line in io.lines(os.getenv("TOKENS")) do tokens[#tokens + 1] = line end
local n = #tokens
request = function()
  return wrk.format("POST", "/v1/pay/orders", {
    Authorization = "Bearer " .. tokens[math.random(n)],
    ["Content-Type"] = "application/json",
  }, '{"product":"vip30"}')
end
