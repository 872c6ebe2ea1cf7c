-- claim: take or keep a worker hostname's heartbeat key, which says which process owns that hostname.
-- GUARANTEE: at most one live process holds a hostname: the key is set only when it is absent, already
--   ours, or still holds the value of a holder the caller proved dead (same machine, pid gone).
-- KEYS[1]: the heartbeat key
-- ARGV[1]: our value; ARGV[2]: time to live in ms; ARGV[3]: a dead holder's value, or ''
-- returns: 1 when we hold the key now, 0 when another process does
local current = redis.call('GET', KEYS[1])
if current == false or current == ARGV[1] or (ARGV[3] ~= '' and current == ARGV[3]) then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
