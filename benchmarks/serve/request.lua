-- wrk script: POSTs one JSON body, counts responses by HTTP status, optionally paces requests
-- on a fixed schedule (open loop, WRK_RATE requests/s in total), and prints one JSON line.
--
-- WRK_ECHO_ID=1 (servers that speak V2, which echoes the request "id"): every request carries
-- its send time as its id, and each 2xx answer's latency is measured from the echoed id, so
-- the p50/p99/max of accepted answers are exact even when fast 503s are mixed in. Without it
-- the body is static and only an upper bound on the accepted p99 is known (p99_ok_upper).
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } weft_timespec;
int clock_gettime(int clk_id, weft_timespec *tp);
]]
local ts = ffi.new("weft_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1000.0 + tonumber(ts.tv_nsec) / 1e6
end

local f = assert(io.open(os.getenv("WRK_BODY_FILE"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"

local echo_id = os.getenv("WRK_ECHO_ID") == "1"
if echo_id then
  assert(wrk.body:sub(1, 1) == "{", "WRK_ECHO_ID needs a JSON object body")
  local head = '{"id": "'
  local tail = '", ' .. wrk.body:sub(2)
  local fmt = string.format
  local id_fmt = "%017.3f" -- fixed width: one Content-Length, so the request line and headers
  local pre = nil          -- are formatted once (after wrk.init has set Host), not per request
  -- Defining request() makes wrk call it for every request, right before it is written.
  function request()
    if pre == nil then
      local sample = head .. fmt(id_fmt, 0) .. tail
      local full = wrk.format(nil, nil, nil, sample)
      pre = full:sub(1, #full - #sample) .. head
    end
    return pre .. fmt(id_fmt, now_ms()) .. tail
  end
end

local threads = {}
function setup(thread)
  table.insert(threads, thread)
end

statuses = {}
ok_ms = {}      -- latency of each 2xx answer whose id was echoed (this thread)
ok_n = 0
ok_missing = 0  -- 2xx answers without a usable id
local interval = nil
local next_at = nil

function init(args)
  local rate = tonumber(os.getenv("WRK_RATE") or "0")
  local nthreads = tonumber(os.getenv("WRK_THREADS") or "1")
  if rate > 0 then
    interval = 1000.0 * nthreads / rate
  end
end

-- Fixed schedule per thread: request k leaves at t0 + k * interval whenever a connection is
-- free, so a slow server does not slow the arrivals down (up to the connection count).
function delay()
  if interval == nil then
    return 0
  end
  local t = now_ms()
  if next_at == nil then
    next_at = t
  end
  local wait = next_at - t
  next_at = next_at + interval
  if wait <= 0 then
    return 0
  end
  return wait
end

function response(status, headers, body)
  local k = tostring(status)
  statuses[k] = (statuses[k] or 0) + 1
  if echo_id and status >= 200 and status < 300 then
    local sent = body and tonumber(string.match(body, '"id"%s*:%s*"([%d%.]+)"'))
    if sent then
      ok_n = ok_n + 1
      ok_ms[ok_n] = now_ms() - sent
    else
      ok_missing = ok_missing + 1
    end
  end
end

-- Nearest-rank quantile of a sorted array.
local function quantile(sorted, q)
  local n = #sorted
  if n == 0 then
    return -1
  end
  local i = math.ceil(q * n)
  if i < 1 then
    i = 1
  end
  return sorted[i]
end

function done(summary, latency, requests)
  local agg = {}
  local total = 0
  local ok = 0
  for _, t in ipairs(threads) do
    local s = t:get("statuses")
    if s then
      for k, v in pairs(s) do
        agg[k] = (agg[k] or 0) + v
        total = total + v
        if tonumber(k) >= 200 and tonumber(k) < 300 then
          ok = ok + v
        end
      end
    end
  end
  local lat_ok = {}
  local missing = 0
  for _, t in ipairs(threads) do
    local a = t:get("ok_ms")
    if a then
      for _, v in ipairs(a) do
        lat_ok[#lat_ok + 1] = v
      end
    end
    missing = missing + (t:get("ok_missing") or 0)
  end
  table.sort(lat_ok)
  -- -1 when not measured (no echo or no 2xx answer); "exact" only if every 2xx was timed.
  local ok_lat = string.format(
    '"ok_latency_ms": {"measured": %s, "timed": %d, "missing": %d, "p50": %.3f, "p90": %.3f, ' ..
    '"p99": %.3f, "max": %.3f}',
    tostring(echo_id and #lat_ok > 0 and missing == 0), #lat_ok, missing,
    quantile(lat_ok, 0.50), quantile(lat_ok, 0.90), quantile(lat_ok, 0.99), quantile(lat_ok, 1.0))
  local parts = {}
  for k, v in pairs(agg) do
    table.insert(parts, string.format('"%s": %d', k, v))
  end
  -- Upper bound on the p99 of accepted (2xx) answers: the overall latency quantile above
  -- which at most 1% of the accepted answers can lie.
  local q_ok = 99.0
  if total > 0 and ok > 0 then
    q_ok = 100.0 * (1.0 - 0.01 * ok / total)
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"duration_us": %d, "requests": %d, "bytes": %d, "statuses": {%s}, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"min": %d, "mean": %.1f, "max": %d, "p50": %d, "p90": %d, "p99": %d, ' ..
    '"p99_ok_upper": %d}, %s}\n',
    summary.duration, summary.requests, summary.bytes, table.concat(parts, ", "),
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.max, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(q_ok), ok_lat))
end
