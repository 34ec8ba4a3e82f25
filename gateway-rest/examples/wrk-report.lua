-- wrk report for gateway-rest/examples/bench.rs: one machine-readable line
-- (requests, seconds, p50/p99/p99.9 latency in microseconds, errors).
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRK %d %.6f %d %d %d %d\n", summary.requests, summary.duration / 1e6,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9),
    e.connect + e.read + e.write + e.timeout + e.status))
end
