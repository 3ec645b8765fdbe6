-- wrk script: POST a fixed body to a list of paths, round-robin; print one JSON result line.
-- Usage: wrk ... -s bench/post.lua http://127.0.0.1:PORT -- BODY_FILE [PATHS_FILE]
local requests = {}
local n = 0
local i = 0

function init(args)
  local f = assert(io.open(args[1], "rb"))
  local body = f:read("*a")
  f:close()
  local paths = {}
  if args[2] ~= nil and args[2] ~= "" then
    for line in io.lines(args[2]) do
      if #line > 0 then table.insert(paths, line) end
    end
  end
  if #paths == 0 then table.insert(paths, wrk.path) end
  wrk.headers["Content-Type"] = "application/json"
  for k, p in ipairs(paths) do
    requests[k] = wrk.format("POST", p, wrk.headers, body)
  end
  n = #requests
end

function request()
  i = i % n + 1
  return requests[i]
end

function done(summary, latency, _)
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,"err_connect":%d,"err_read":%d,'
    .. '"err_write":%d,"err_status":%d,"err_timeout":%d,"lat_mean_us":%.1f,"lat_max_us":%d,'
    .. '"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency.mean, latency.max, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9)))
end
