-- Begin: refuse a blocked or saturated attempt, else charge it on every
-- counter: counted as a failure at once where its failure would not take
-- the counter above its limit, else (the last chance) as a token pending
-- until now + pending timeout, whose failure Finish counts. The same as
-- redis_charge.lua, which runs first, with what it leaves here: pending
-- charges past their deadline, which are settled first.
local op = load_op(false)
settle_expired(op, true)
if blocked_any(op) then
  return reply(op, false, false, true)
end
local saturated, last_chance = false, false
for _, c in ipairs(op.counters) do
  c.used = math.min(failures(c), c.limit) + c.pending_n
  if c.used >= c.limit + 1 then
    c.charge = 1
    saturated = true
  end
end
if saturated then
  return reply(op, false, false, true)
end
for _, c in ipairs(op.counters) do
  if c.used + 1 == c.limit + 1 then
    charge_pending(op, c)
    last_chance = true
  else
    count_now(op, c)
  end
end
return reply(op, true, last_chance, true)
