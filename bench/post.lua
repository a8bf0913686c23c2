-- Posts pre-signed, unique bodies; each wrk thread takes every Nth line of the corpus.
-- Arguments after "--": corpus path, thread count, first line offset.
-- Counts every answer by status (wrk itself only counts statuses above 399).
local threads = {}
local counter = 0

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

local sigs, bodies, n, i = {}, {}, 0, 0
statuses = {}

function init(args)
  local path, stride, offset = args[1], tonumber(args[2]), tonumber(args[3] or "0")
  local line_no = 0
  for line in io.lines(path) do
    if line_no >= offset and (line_no - offset) % stride == tid then
      local tab = line:find("\t", 1, true)
      n = n + 1
      sigs[n] = line:sub(1, tab - 1)
      bodies[n] = line:sub(tab + 1)
    end
    line_no = line_no + 1
  end
end

function request()
  i = i + 1
  if i > n then i = 1 end
  return wrk.format("POST", "/webhooks/voucherify", {
    ["Content-Type"] = "application/json",
    ["x-voucherify-signature"] = sigs[i],
  }, bodies[i])
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %.0f %.0f\n",
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99)))
  local total = {}
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      total[status] = (total[status] or 0) + count
    end
  end
  for status, count in pairs(total) do
    io.write(string.format("STATUS %d %d\n", status, count))
  end
end
