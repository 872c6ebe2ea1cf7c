-- defer: park a fetched message whose ETA is in the future in the ETA sorted set until it is due.
-- GUARANTEE: the message is added to the set only if this call removed it from the processing list, so
--   a message recovered by someone else meanwhile is not duplicated; it is always in exactly one place.
-- KEYS[1]: the processing list holding it; KEYS[2]: the ETA sorted set
-- ARGV[1]: the raw message; ARGV[2]: due time (epoch ms); ARGV[3]: the queue list it goes back to;
-- ARGV[4]: the message as it goes back (the same, or with a header added)
-- The set member is `<queue list>\n<message>`, which promote.lua splits.
-- returns: 1 when deferred, 0 when the message was no longer in the processing list
if redis.call('LREM', KEYS[1], -1, ARGV[1]) == 0 then
  return 0
end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3] .. '\n' .. ARGV[4])
return 1
