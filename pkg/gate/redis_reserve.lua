-- Reserve: the first half of Record when the counters live on different
-- slots (RedisClusterStore): refuse a blocked attempt, else charge the
-- token as pending whatever the saturation, as Record counts regardless
-- of attempts in flight. Finish with the same token completes it.
--
-- The same Record again (a gate replaying one whose reply came too late)
-- charges nothing twice. Where the first call's Finish round settled the
-- token, its marker is found: nothing is charged nor refused, and the
-- reply holds the transitions that round made (kept in the marker while
-- the failures it counted are, see remember; a marker without any lives
-- the pending timeout, and a replay later than that counts again there).
-- Where the first call's charge is still pending, nothing more is
-- charged and the block of another attempt since does not refuse: the
-- Finish round completes the first call. Where that charge is found past
-- its deadline, it becomes the failure it would have been (settle_expired)
-- and the token is marked settled there, with the blocks that made, as
-- the first call's Finish round would have left it: this reply may be
-- lost too, and the next replay then recalls them. (Where another call
-- settled the expired charge first, nothing tells the token's: the
-- replay counts again there, on the safe side.) The reply's second value
-- (last chance, which means nothing else here) is 1 only where this call
-- charged the token: the charges a refused Record takes back
-- (redis_release.lua), never the first call's, which would then never be
-- counted.
local op = load_op(true)
if recall(op) ~= nil then
  return reply(op, true, false)
end
settle_expired(op, false, op.token)
for _, c in ipairs(op.counters) do
  if c.expired_token then
    if #op.transitions > 0 then
      remember(op, true, true)
    else
      redis.call('SET', op.marker, '1', 'PX', marker_ttl(op, false))
    end
    break
  end
end
local fresh = {}
for _, c in ipairs(op.counters) do
  if not c.expired_token and not redis.call('ZSCORE', c.pending, op.token) then
    fresh[#fresh + 1] = c
  end
end
for _, c in ipairs(fresh) do
  if refuses(c) then
    return reply(op, false, false)
  end
end
for _, c in ipairs(fresh) do
  charge_pending(op, c)
end
return reply(op, true, #fresh > 0)
