-- promote: move due messages from the ETA sorted set to the consumer end of their queue lists.
-- GUARANTEE: a member is pushed only by the caller whose ZREM removed it, so concurrent schedulers on
--   several workers never push the same message twice, and none is dropped.
-- KEYS[1]: the ETA sorted set; KEYS[2..n]: the destination list of each member, in ARGV order
-- ARGV[i]: the set member `<list>\n<raw>`; the raw message is what follows the first newline
-- returns: the number of messages pushed
local pushed = 0
for i = 1, #ARGV do
  if redis.call('ZREM', KEYS[1], ARGV[i]) == 1 then
    local nl = string.find(ARGV[i], '\n', 1, true)
    redis.call('RPUSH', KEYS[i + 1], string.sub(ARGV[i], nl + 1))
    pushed = pushed + 1
  end
end
return pushed
