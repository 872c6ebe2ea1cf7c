-- claim: take or keep a worker hostname's heartbeat key, which says which process owns that hostname.
-- GUARANTEE: at most one live process holds a hostname: the key is set only when it is absent, already
--   ours, or still holds the value of a holder the caller proved dead (same machine, pid gone).
-- KEYS[1]: the heartbeat key
-- ARGV[1]: our value; ARGV[2]: time to live in ms; ARGV[3]: a dead holder's value, or ''
-- returns: 1 when we held the key and keep it; 2 when we take it (it was absent, or the dead holder's):
--   for a running worker, 2 means its heartbeat had expired, so a sweep may have handed its messages
--   to others; 0 when another process holds it
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if current == false or (ARGV[3] ~= '' and current == ARGV[3]) then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 2
end
return 0
