-- wrk script: replays the request mix written by mix.js (file in $MIX),
-- one line per request, in order, in a loop; counts non-2xx answers.
-- mix.js marks every value of the adapter's identifier with TOKEN; each
-- loop replaces it with a value no earlier loop used (run, thread, loop),
-- so that the conditional updates create plans as a first sync does,
-- instead of updating the ones an earlier loop created.
local TOKEN = "@@N@@" -- mix.js: the same string (no pattern characters)
local lines = {}
local file = os.getenv("MIX")
for line in io.lines(file) do
  local method, path, body = line:match("^(%u+)\t([^\t]+)\t?(.*)$")
  if method then
    lines[#lines + 1] = {method, path, body ~= "" and body or nil}
  end
end

-- setup() runs in the main Lua state once per thread: give each its number
local threads = 0
setup = function(thread)
  threads = threads + 1
  thread:set("thread_no", threads)
end

local run = os.time()
local i, loop, token = 0, 0, ""
local headers = {["Content-Type"] = "application/fhir+json", ["Accept"] = "application/fhir+json"}
request = function()
  if i % #lines == 0 then
    loop = loop + 1
    token = string.format("-%d-%d-%d", run, thread_no or 1, loop)
  end
  i = i % #lines + 1
  local l = lines[i]
  local path = string.gsub(l[2], TOKEN, token)
  local body = l[3] and string.gsub(l[3], TOKEN, token)
  return wrk.format(l[1], path, headers, body)
end
done = function(summary, latency, requests)
  io.write(string.format("wrk_requests=%d wrk_seconds=%.3f wrk_rps=%.1f wrk_non2xx=%d wrk_errors=%d\n",
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
