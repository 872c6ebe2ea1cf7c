-- rate: reserve the next start slot of a rate-limited task name, for all workers together (GCRA).
-- GUARANTEE: slots handed out for one name are at least ARGV[1] ms apart, whoever asks, on Redis's
--   clock (not the workers'), so N workers together keep the rate one worker would.
-- KEYS[1]: the name's rate key (holds the next free slot, epoch ms)
-- ARGV[1]: the interval between starts (ms)
-- returns: how many ms from now the reserved slot is (0: start now)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local slot = tonumber(redis.call('GET', KEYS[1]) or '0')
if slot < now then slot = now end
redis.call('SET', KEYS[1], slot + interval, 'PX', slot + interval - now + 1000)
return slot - now
