-- wrk script for make bench-cds: POST the body in $BODY to $PATHQ, each
-- request with its own token from $TOKENS (a jti is accepted once): thread k
-- of $THREADS uses tokens k, k + THREADS, ...  Counts non-2xx answers.
local tokens = {}
for line in io.lines(os.getenv("TOKENS")) do tokens[#tokens + 1] = line end
local f = io.open(os.getenv("BODY"), "rb")
local body = f:read("*a")
f:close()
local path = os.getenv("PATHQ")
local nthreads = tonumber(os.getenv("THREADS"))

local threads, all = 0, {}
setup = function(thread)
  threads = threads + 1
  thread:set("thread_no", threads)
  all[#all + 1] = thread
end

local n = 0
request = function()
  local k = (thread_no or 1) + n * nthreads
  n = n + 1
  local t = tokens[k] or "exhausted"
  return wrk.format("POST", path, {["Content-Type"] = "application/json",
                                  ["Authorization"] = "Bearer " .. t}, body)
end

bad = 0
response = function(status)
  if status < 200 or status > 299 then bad = bad + 1 end
end

done = function(summary, latency, requests)
  local b = 0
  for _, t in ipairs(all) do b = b + (t:get("bad") or 0) end
  io.write(string.format("RESULT p50_ms=%.2f p99_ms=%.2f rps=%.1f requests=%d non2xx=%d\n",
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.requests / (summary.duration / 1e6), summary.requests, b))
end
