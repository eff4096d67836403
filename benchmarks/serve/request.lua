-- wrk script: POSTs one JSON body, counts responses by HTTP status, optionally paces requests
-- on a fixed schedule (open loop, WRK_RATE requests/s in total), and prints one JSON line.
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

local threads = {}
function setup(thread)
  table.insert(threads, thread)
end

statuses = {}
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
    '"p99_ok_upper": %d}}\n',
    summary.duration, summary.requests, summary.bytes, table.concat(parts, ", "),
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.max, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(q_ok)))
end
