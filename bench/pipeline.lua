-- wrk script: HTTP/1.1 pipelining, 16 requests written back to back in one batch.
--   WRK_CONNECTIONS=64 wrk -t1 -c64 -d10s --latency -s bench/pipeline.lua http://127.0.0.1:8080/
--
-- wrk parses the batch once (it counts the 16 requests), then on each connection writes a batch
-- and waits for its 16 responses before writing the next; every response counts as one request
-- in its totals and in Requests/sec. Latency is recorded once per batch (from its write to its
-- last response).
--
-- wrk's printed latency percentiles are wrong when pipelining: its coordinated-omission
-- correction assumes one request per round trip, so its expected interval e is 16 times too short,
-- and most of the samples it adds fall below the recorded minimum, where its percentile scan
-- never looks (hence a 99% of 0.00us). The correction is exactly invertible: for a value m above
-- e it adds the final count at m+e to m, so measured(m) = final(m) - final(m+e), and every
-- measured sample lies at or above the minimum, where Lua can read the histogram (latency(i) is
-- the i-th non-empty bucket: value, count). done() undoes it and prints the measured per-batch
-- percentiles as
--   batch_latency_us batches=<n> p50=<us> p90=<us> p99=<us> max=<us>
-- when WRK_CONNECTIONS holds wrk's -c (e depends on it and Lua cannot see it).
local depth = 16

init = function(args)
  local requests = {}
  for i = 1, depth do
    requests[i] = wrk.format()  -- GET of the URL's path, with wrk's default headers
  end
  batch = table.concat(requests)
end

request = function()
  return batch
end

done = function(summary, latency, requests)
  local connections = tonumber(os.getenv("WRK_CONNECTIONS") or "")
  if not connections or connections <= 0 then
    return
  end
  -- The interval wrk used: runtime_us / (complete / connections), both integer divisions.
  local per_connection = math.floor(summary.requests / connections)
  local interval = 0
  if per_connection > 0 then
    interval = math.floor(summary.duration / per_connection)
  end
  -- Each latency(i) scans wrk's histogram from the minimum (about a second for a 10 s run):
  -- give up, printing nothing, after 20 s of CPU time.
  local buckets = #latency
  if buckets == 0 then
    return
  end
  local final = {}
  local values = {}
  local started = os.clock()
  for i = 1, buckets do
    local value, count = latency(i)
    final[value] = count
    values[i] = value
    if i % 256 == 0 and os.clock() - started > 20 then
      io.stderr:write("pipeline.lua: reading the latency histogram took too long\n")
      return
    end
  end
  local measured = {}
  local total = 0
  for i = 1, buckets do
    local m = values[i]
    local n = final[m]
    if interval > 0 and m > interval then
      n = n - (final[m + interval] or 0)
    end
    measured[i] = n
    total = total + n
  end
  if total <= 0 then
    return
  end
  local wanted = { 50, 90, 99 }
  local found = {}
  local k, seen = 1, 0
  for i = 1, buckets do
    seen = seen + measured[i]
    while k <= #wanted and seen >= math.ceil(total * wanted[k] / 100) do
      found[k] = values[i]
      k = k + 1
    end
  end
  io.write(string.format("batch_latency_us batches=%d p50=%d p90=%d p99=%d max=%d\n",
                         total, found[1], found[2], found[3], latency.max))
end
