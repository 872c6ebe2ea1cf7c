-- requeue: hand everything in the given processing lists back to the consumer end of their sources.
-- GUARANTEE: each message is moved, never copied or dropped, and the oldest ends up taken first (kombu's
--   restore does the same), so a restart or shutdown puts unfinished work at the front of its queue.
-- KEYS: processing1, source1, processing2, source2, ...
-- returns: the number of messages moved
local moved = 0
for i = 1, #KEYS, 2 do
  while redis.call('LMOVE', KEYS[i], KEYS[i + 1], 'LEFT', 'RIGHT') do
    moved = moved + 1
  end
end
return moved
