-- Begin: refuse a blocked or saturated attempt, else charge the token as
-- pending on every counter until now + pending timeout.
local op = load_op(true)
settle_expired(op, true)
if blocked_any(op) then
  return reply(op, false, false, true)
end
local saturated, last_chance = false, false
for _, c in ipairs(op.counters) do
  local used = math.min(failures(c), c.limit) + c.pending_n
  if used >= c.limit + 1 then
    c.saturated = 1
    saturated = true
  elseif used + 1 == c.limit + 1 then
    last_chance = true
  end
end
if saturated then
  return reply(op, false, false, true)
end
charge(op)
return reply(op, true, last_chance, true)
