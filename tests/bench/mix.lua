-- wrk script: replays the request mix written by mix.js (file in $MIX),
-- one line per request, in order, in a loop; counts non-2xx answers.
local lines = {}
local file = os.getenv("MIX")
for line in io.lines(file) do
  local method, path, body = line:match("^(%u+)\t([^\t]+)\t?(.*)$")
  if method then
    lines[#lines + 1] = {method, path, body ~= "" and body or nil}
  end
end
local i = 0
local headers = {["Content-Type"] = "application/fhir+json", ["Accept"] = "application/fhir+json"}
request = function()
  i = i % #lines + 1
  local l = lines[i]
  return wrk.format(l[1], l[2], headers, l[3])
end
done = function(summary, latency, requests)
  io.write(string.format("wrk_requests=%d wrk_seconds=%.3f wrk_rps=%.1f wrk_non2xx=%d wrk_errors=%d\n",
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
