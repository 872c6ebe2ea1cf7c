-- retry: replace a finished run's message by its retry (same task id, retries + 1, a new ETA) and store
-- the RETRY state, in one step.
-- GUARANTEE: the retry is published only if this call removed the original from the processing list
--   (a message recovered by someone else meanwhile is not doubled); the original never leaves without
--   its retry taking its place.
-- KEYS[1]: the processing list; KEYS[2]: the list the retry goes to (its queue); KEYS[3]: the result key
-- ARGV[1]: the original message; ARGV[2]: the retry message; ARGV[3]: RETRY meta ('' = store none);
-- ARGV[4]: result expiry in seconds
-- returns: 1 when retried, 0 when the original was no longer ours
if redis.call('LREM', KEYS[1], -1, ARGV[1]) == 0 then
  return 0
end
redis.call('LPUSH', KEYS[2], ARGV[2])
if ARGV[3] ~= '' then
  redis.call('SET', KEYS[3], ARGV[3], 'EX', ARGV[4])
  redis.call('PUBLISH', KEYS[3], ARGV[3])
end
return 1
