-- Begin: refuse a blocked or saturated attempt, else charge the token as
-- pending on every counter until now + pending timeout.
local op = load_op(true)
settle_expired(op)
for _, c in ipairs(op.counters) do
  if is_blocked(c) then
    return reply(op, false, false)
  end
end
local saturated, last_chance = false, false
for _, c in ipairs(op.counters) do
  local used = math.min(failures(c), c.limit) + redis.call('ZCARD', c.pending)
  if used >= c.limit + 1 then
    c.saturated = 1
    saturated = true
  elseif used + 1 == c.limit + 1 then
    last_chance = true
  end
end
if saturated then
  return reply(op, false, false)
end
local deadline = op.now + op.pending_timeout
if op.pending_timeout <= 0 then
  deadline = '+inf'
end
for _, c in ipairs(op.counters) do
  redis.call('ZADD', c.pending, deadline, op.token)
  if op.pending_timeout > 0 and op.attempt_cooloff > 0 then
    -- Once every charge is overdue by the attempt cool-off, the failures
    -- they would have become are forgotten too: the set may go.
    redis.call('PEXPIRE', c.pending, op.pending_timeout + op.attempt_cooloff)
  end
end
return reply(op, true, last_chance)
