-- tick: send one periodic task for one tick of its schedule, exactly once across all beat processes.
-- GUARANTEE: a tick is sent only if it is at least ARGV[2] ms after the last tick sent for the entry,
--   and recording it and queueing its message are one step: a beat process that dies or stalls (an
--   old leader) can neither double a tick nor record one it did not send.
-- KEYS[1]: the entry's last-tick key; KEYS[2]: the queue list; KEYS[3]: the queue's kombu binding set
-- ARGV[1]: the tick (epoch ms); ARGV[2]: the least gap between ticks (ms); ARGV[3]: the message;
-- ARGV[4]: the binding member
-- returns: 1 when sent, 0 when that tick (or a later one) was already sent
local last = tonumber(redis.call('GET', KEYS[1]) or '')
local tick = tonumber(ARGV[1])
if last and tick < last + tonumber(ARGV[2]) then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[4])
redis.call('LPUSH', KEYS[2], ARGV[3])
return 1
