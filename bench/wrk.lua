-- wrk script for bench/load.py: wrk ... <url> -s wrk.lua -- METHOD PATHS_FILE [BODY_FILE CONTENT_TYPE]
-- Every request is pre-formatted in init(); request() only picks one of them at random.
-- done() prints one line that bench/load.py parses (latencies in microseconds).

local reqs = {}
local n = 0

function init(args)
  local method, paths_file, body_file, content_type = args[1], args[2], args[3], args[4]
  local headers, body = {}, nil
  if body_file ~= nil and body_file ~= "" then
    local f = assert(io.open(body_file, "rb"))
    body = f:read("*a")
    f:close()
    headers["Content-Type"] = content_type
  end
  for path in io.lines(paths_file) do
    n = n + 1
    reqs[n] = wrk.format(method, path, headers, body)
  end
  math.randomseed(os.time())
end

function request()
  return reqs[math.random(n)]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH_RESULT requests=%d duration_us=%d errors=%d status_errors=%d p50_us=%.1f p95_us=%.1f"
    .. " p99_us=%.1f\n",
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(95), latency:percentile(99)))
end
