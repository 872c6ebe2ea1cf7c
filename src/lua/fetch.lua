-- fetch: take up to ARGV[1] messages from the watched lists, highest priority first, without blocking.
-- GUARANTEE: a message leaves its source list only by landing, in the same atomic step, at the head of
--   the processing list paired with that source; a crash before or after this script loses nothing.
-- KEYS: source1, processing1, source2, processing2, ... in the order to take from (priority, then queue)
-- ARGV[1]: the most messages to move (the consumer's free capacity, at most 1000)
-- returns: a flat array {pair1, raw1, pair2, raw2, ...}; pair is the 1-based index of the source pair
local want = tonumber(ARGV[1])
local out = {}
for i = 1, #KEYS, 2 do
  if want <= 0 then break end
  local items = redis.call('RPOP', KEYS[i], want)
  if items then
    redis.call('LPUSH', KEYS[i + 1], unpack(items))
    local pair = (i + 1) / 2
    for j = 1, #items do
      out[#out + 1] = pair
      out[#out + 1] = items[j]
    end
    want = want - #items
  end
end
return out
