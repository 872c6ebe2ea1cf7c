-- recover: hand a dead worker's reserved messages back to the head of their queues, counting how often
-- each message has been recovered; one recovered too often goes to the dead-letter list instead.
-- GUARANTEE: each message is moved, never copied or dropped, in one atomic step: back to the consumer
--   end of its source list (oldest taken first, as kombu's restore does) or into the dead-letter list
--   with the reason. Nothing happens while the worker's heartbeat key exists (it is alive), unless
--   ARGV[5] says the caller owns that hostname (a restart recovering its own previous run).
-- A message that kills every worker it reaches cannot loop forever: its counter (keyed by a hash of the
--   exact message, so a re-sent task counts afresh) outlives the workers it killed.
-- KEYS[1]: the worker's heartbeat key; KEYS[2]: its processing index (set of source lists);
--   KEYS[3]: the dead-letter list; KEYS[4]: the set of known workers
-- ARGV[1]: hostname; ARGV[2]: most recoveries allowed; ARGV[3]: counter lifetime (s);
--   ARGV[4]: the time (ISO 8601) for dead-letter records; ARGV[5]: '1' when the caller owns the hostname;
--   ARGV[6]: processing list name prefix (the source list name follows it)
-- Keys built here (processing lists, counters) are not declared: celeriac targets a single Redis node.
-- returns: {moved, dead1, dead2, ...}: how many went back, then each message that was dead-lettered
if ARGV[5] ~= '1' and redis.call('EXISTS', KEYS[1]) == 1 then
  return {0}
end
local limit = tonumber(ARGV[2])
local out = {0}
for _, source in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local processing = ARGV[6] .. source
  while true do
    local raw = redis.call('LPOP', processing)
    if not raw then break end
    local counter = 'celeriac:recovered:' .. redis.sha1hex(raw)
    local n = redis.call('INCR', counter)
    redis.call('EXPIRE', counter, ARGV[3])
    if n > limit then
      local reason = 'recovered ' .. (n - 1) .. ' times from workers that died while holding it; the limit is ' .. limit
      local id, task = cjson.null, cjson.null
      local ok, envelope = pcall(cjson.decode, raw)
      if ok and type(envelope) == 'table' and type(envelope.headers) == 'table' then
        id = envelope.headers.id or cjson.null
        task = envelope.headers.task or cjson.null
      end
      redis.call('LPUSH', KEYS[3], cjson.encode({
        reason = reason, code = 'E_RECOVERY_LIMIT', task_id = id, task = task, queue = source,
        hostname = ARGV[1], time = ARGV[4], raw = raw,
      }))
      out[#out + 1] = raw
    else
      redis.call('RPUSH', source, raw)
      out[1] = out[1] + 1
    end
  end
end
if ARGV[5] ~= '1' then
  redis.call('DEL', KEYS[2])
  redis.call('SREM', KEYS[4], ARGV[1])
end
return out
