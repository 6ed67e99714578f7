-- wrk -s bench/wrk-json.lua: after wrk's own report, one line of JSON with the
-- counts that bench/http-vs-kernel.sh checks. Only `done` is defined, so wrk
-- keeps its static request path (no Lua per request).
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "bytes": %d, "errors": {"connect": %d, "read": %d, ' ..
    '"write": %d, "status": %d, "timeout": %d}, "latency_p50_us": %d, "latency_p99_us": %d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(99)))
end
