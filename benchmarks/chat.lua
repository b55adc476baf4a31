-- wrk script: POST OpenAI chat completions, and print one JSON line of results at the end.
-- BENCH_MODE=plain|stream|mixed (mixed alternates the two, for the soak), BENCH_MODEL names the model.
local mode = os.getenv("BENCH_MODE") or "plain"
local model = os.getenv("BENCH_MODEL") or "gpt-4o-mini"
local messages = '"messages":[{"role":"user","content":"Say hello in five words."}]'
local plain = '{"model":"' .. model .. '",' .. messages .. ',"max_tokens":64}'
local stream = '{"model":"' .. model .. '",' .. messages .. ',"max_tokens":64,"stream":true}'

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer sk-bench-client"
wrk.body = mode == "stream" and stream or plain

local counter = 0
local plain_request, stream_request

function request()
  if plain_request == nil then
    -- Built on first use: wrk adds the Host header only after the script has loaded (h11 requires it).
    plain_request = wrk.format(nil, nil, nil, plain)
    stream_request = wrk.format(nil, nil, nil, stream)
  end
  if mode ~= "mixed" then
    return mode == "stream" and stream_request or plain_request
  end
  counter = counter + 1
  return (counter % 2 == 0) and stream_request or plain_request
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,' ..
    '"p50_us":%d,"p99_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean))
end
