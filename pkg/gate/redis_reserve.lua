-- Reserve: the first half of Record when the counters live on different
-- slots (RedisClusterStore): refuse a blocked attempt, else charge the
-- token as pending whatever the saturation, as Record counts regardless
-- of attempts in flight. Finish with the same token completes it.
local op = load_op(false)
settle_expired(op)
if blocked_any(op) then
  return reply(op, false, false)
end
charge(op)
return reply(op, true, false)
