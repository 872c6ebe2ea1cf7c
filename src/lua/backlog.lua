-- backlog: what waits in Redis, for the scrape-time gauges: each queue's length (its priority
-- sub-lists summed), the ETA set's size and the dead-letter list's length.
-- GUARANTEE: read-only, and every length is read at one instant (a script runs alone), so one scrape's
--   figures agree with each other: a message moving between two of these keys is counted once.
-- Why a script and not a pipeline of LLENs: with 50 queues that pipeline was 202 commands on the
--   command connection every scrape, from every worker; this is one.
-- KEYS: each queue's sub-lists (ARGV[1] per queue, in queue order), then the ETA set, then the
--   dead-letter list
-- ARGV[1]: sub-lists per queue
-- returns: one length per queue, then the ETA backlog, then the dead-letter length
local per = tonumber(ARGV[1])
local lists = #KEYS - 2
local out = {}
for first = 1, lists, per do
  local total = 0
  for k = first, first + per - 1 do
    total = total + redis.call('LLEN', KEYS[k])
  end
  out[#out + 1] = total
end
out[#out + 1] = redis.call('ZCARD', KEYS[lists + 1])
out[#out + 1] = redis.call('LLEN', KEYS[lists + 2])
return out
