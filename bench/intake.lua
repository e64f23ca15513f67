-- wrk script for the intake benchmark (bench/wrk.py): OCPI 2.2.1 EVSE status PATCHes, round-robin over
-- the paths in args[4] (one a line), every one a real change: the status alternates per pass over the
-- EVSEs and last_updated grows by a microsecond per request from args[1] (epoch seconds) + args[2].
-- args[3]: the Authorization header value ("" for none). One thread is assumed (`-t 1`).
local paths = {}
local statuses = { "CHARGING", "AVAILABLE" }
local base_s, offset, token
-- globals, not locals: done() reads them from each thread with thread:get
counter = 0
errors = 0
error_sample = ""
local last_s, prefix = -1, ""
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  base_s = tonumber(args[1])
  offset = tonumber(args[2])
  token = args[3]
  for line in io.lines(args[4]) do
    paths[#paths + 1] = line
  end
end

function request()
  local i = offset + counter
  counter = counter + 1
  local n = #paths
  local secs = base_s + math.floor(i / 1000000)
  if secs ~= last_s then
    last_s = secs
    prefix = os.date("!%Y-%m-%dT%H:%M:%S", secs)
  end
  local body = '{"status":"' .. statuses[math.floor(i / n) % 2 + 1] .. '","last_updated":"'
    .. prefix .. string.format(".%06dZ", i % 1000000) .. '"}'
  local headers = { ["Content-Type"] = "application/json" }
  if token ~= "" then
    headers["Authorization"] = token
  end
  return wrk.format("PATCH", paths[i % n + 1], headers, body)
end

function response(status, headers, body)
  if status ~= 200 or not string.find(body, '"status_code": *1000') then
    errors = errors + 1
    if error_sample == "" then
      -- printable ASCII without quotes or backslashes, so done() can write it as a JSON string
      error_sample = (status .. " " .. string.sub(body, 1, 200)):gsub('[^%w %.,:;_%-%(%)%[%]{}]', "?")
    end
  end
end

function done(summary, latency, requests)
  local errs, sample, sent = 0, "", 0
  for _, thread in ipairs(threads) do
    errs = errs + thread:get("errors")
    sent = sent + thread:get("counter")
    if sample == "" then
      sample = thread:get("error_sample")
    end
  end
  local e = summary.errors
  io.write(string.format(
    '\nRESULT {"requests": %d, "sent": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, '
      .. '"p999_us": %d, "max_us": %d, "bad_answers": %d, "socket_errors": %d, "error_sample": "%s"}\n',
    summary.requests, sent, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.max, errs,
    e.connect + e.read + e.write + e.status + e.timeout, sample))
end
