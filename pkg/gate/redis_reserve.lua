-- Reserve: the first half of Record when the counters live on different
-- slots (RedisClusterStore): refuse a blocked attempt, else charge the
-- token as pending whatever the saturation, as Record counts regardless
-- of attempts in flight. Finish with the same token completes it.
-- The same Record again (a gate replaying one whose reply came too
-- late): where its Finish round settled the token already, nothing is
-- charged nor refused, and that round replies what the first one made.
local op = load_op(true)
if redis.call('EXISTS', op.marker) == 1 then
  return reply(op, true, false)
end
settle_expired(op)
if blocked_any(op) then
  return reply(op, false, false)
end
charge(op)
return reply(op, true, false)
