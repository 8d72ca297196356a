-- wrk script: which loop served each request. Against hello_cores' GET /worker, whose body is
-- "Hello World from worker <id> (cpu <n>, pid <pid>)", it tallies the worker id of every
-- response. Each wrk thread has its own Lua state, so the tallies are per thread; setup() keeps
-- every thread and done() adds their tables up and prints one line per worker:
--   worker_share <id> <responses>
-- plus "worker_share_unmatched <n>" for responses without a worker id.
--   wrk -t2 -c200 -d10s -s bench/worker_share.lua http://127.0.0.1:8080/worker
local threads = {}

setup = function(thread)
  table.insert(threads, thread)
end

init = function(args)
  tally = {}
  unmatched = 0
end

response = function(status, headers, body)
  local id = body and string.match(body, "worker (%d+)")
  if id then
    tally[id] = (tally[id] or 0) + 1
  else
    unmatched = unmatched + 1
  end
end

done = function(summary, latency, requests)
  local total = {}
  local ids = {}
  local missing = 0
  for _, thread in ipairs(threads) do
    local t = thread:get("tally") or {}
    for id, n in pairs(t) do
      if total[id] == nil then
        total[id] = 0
        table.insert(ids, id)
      end
      total[id] = total[id] + n
    end
    missing = missing + (thread:get("unmatched") or 0)
  end
  table.sort(ids, function(a, b) return tonumber(a) < tonumber(b) end)
  for _, id in ipairs(ids) do
    io.write(string.format("worker_share %s %d\n", id, total[id]))
  end
  io.write(string.format("worker_share_unmatched %d\n", missing))
end
