-- unfetch: hand one reserved message back to the consumer end of its queue, unprocessed.
-- GUARANTEE: the message is moved, never copied or dropped: it is pushed back only if this call removed
--   it from the processing list, and it is taken next, as if it had never been fetched.
-- KEYS[1]: the processing list holding it; KEYS[2]: its source list
-- ARGV[1]: the raw message
-- returns: 1 when released, 0 when it was no longer in the processing list
if redis.call('LREM', KEYS[1], -1, ARGV[1]) == 0 then
  return 0
end
redis.call('RPUSH', KEYS[2], ARGV[1])
return 1
