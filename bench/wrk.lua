-- wrk script for bench/load.py and bench/auth.py:
--   wrk ... <url> -s wrk.lua -- METHOD PATHS_FILE HEADERS_FILE [BODY_FILE CONTENT_TYPE [MODE]]
-- HEADERS_FILE holds extra request headers, one `Name: value` a line (may be empty); BODY_FILE
-- (may be "") one body, or several separated by \x1e (which JSON and form text never hold).
-- Every request is pre-formatted in init(). MODE `random` (the default): request() picks one at
-- random. MODE `once`: requests go out in order and never one twice (single-use codes and tokens;
-- with -t1 one Lua state, so the counter is shared by every connection); past the end the last
-- one is sent again (refused: counted as an error).
-- done() prints one line that bench/load.py parses (latencies in microseconds).

local reqs = {}
local n, i, mode = 0, 0, "random"

function init(args)
  local method, paths_file, headers_file = args[1], args[2], args[3]
  local body_file, content_type = args[4], args[5]
  mode = args[6] or "random"
  local headers, bodies, paths = {}, {}, {}
  for line in io.lines(headers_file) do
    local name, value = line:match("^([^:]+):%s*(.*)$")
    if name ~= nil then
      headers[name] = value
    end
  end
  if body_file ~= nil and body_file ~= "" then
    local f = assert(io.open(body_file, "rb"))
    for body in f:read("*a"):gmatch("[^\30]+") do
      bodies[#bodies + 1] = body
    end
    f:close()
    headers["Content-Type"] = content_type
  end
  for path in io.lines(paths_file) do
    paths[#paths + 1] = path
  end
  -- every path and every body: max(#paths, #bodies) requests, pairing them in turn
  for k = 1, math.max(#paths, #bodies) do
    local body = nil
    if #bodies > 0 then
      body = bodies[(k - 1) % #bodies + 1]
    end
    n = n + 1
    reqs[n] = wrk.format(method, paths[(k - 1) % #paths + 1], headers, body)
  end
  math.randomseed(os.time())
end

function request()
  if mode == "once" then
    if i < n then
      i = i + 1
    end
    return reqs[i]
  end
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
