-- ack: store the results of finished tasks and remove their messages from the processing lists.
-- GUARANTEE: for every task of the batch, the result is stored (and published on its channel for
--   waiting clients) in the same atomic step as its message leaves the processing list: a crash before
--   leaves the message to run again, never a removed message without its result.
-- Why one script rather than MULTI: one command per batch instead of three per task; measured 40-57 µs
--   per task with MULTI against 14-25 µs with this script (batches of 50, this machine).
-- KEYS: per task, its processing list and its result key (the processing list again when storing nothing)
-- ARGV[1]: result expiry in seconds; then per task, the raw message and the meta JSON ('' = store none)
-- returns: the number of messages removed
local expires = ARGV[1]
local removed = 0
for i = 1, #KEYS, 2 do
  local meta = ARGV[i + 2]
  if meta ~= '' then
    redis.call('SET', KEYS[i + 1], meta, 'EX', expires)
    redis.call('PUBLISH', KEYS[i + 1], meta)
  end
  removed = removed + redis.call('LREM', KEYS[i], -1, ARGV[i + 1])
end
return removed
