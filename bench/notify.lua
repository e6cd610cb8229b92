-- POST /v1/pay/notify with WeChat Pay's signed notifications from $NOTICES_FILE (made by
-- examples/pay_seed.rs: TIMESTAMP\tNONCE\tSIGNATURE\tSERIAL\tBODY per line). Each thread
-- walks its own share in order, so every notification is first applied (created -> paid
-- with its event), and a thread that runs out starts over with duplicates, as WeChat
-- Pay's retries are.
local notices = {}
for line in io.lines(os.getenv("NOTICES_FILE")) do
  local ts, nonce, sig, serial, body = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
  notices[#notices + 1] = { ts = ts, nonce = nonce, sig = sig, serial = serial, body = body }
end

local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

function init(args)
  -- wrk -t2: thread 1 takes the odd lines, thread 2 the even ones.
  next_index = tid
end

request = function()
  local n = notices[next_index]
  next_index = next_index + 2
  if next_index > #notices then next_index = tid end
  return wrk.format("POST", "/v1/pay/notify", {
    ["Content-Type"] = "application/json",
    ["Wechatpay-Timestamp"] = n.ts,
    ["Wechatpay-Nonce"] = n.nonce,
    ["Wechatpay-Signature"] = n.sig,
    ["Wechatpay-Serial"] = n.serial,
    ["Wechatpay-Signature-Type"] = "WECHATPAY2-SHA256-RSA2048",
  }, n.body)
end
