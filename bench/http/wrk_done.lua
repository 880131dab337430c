-- Appended to every wrk script by bench/run: one machine-readable line per run.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d p999_us=%d " ..
                         "errors=%d non2xx=%d\n", summary.requests, summary.duration,
                         latency:percentile(50), latency:percentile(99), latency:percentile(99.9),
                         e.connect + e.read + e.write + e.timeout, e.status))
end
