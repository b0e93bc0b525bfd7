-- Begin: refuse a blocked or saturated attempt, else charge it on every
-- counter: counted as a failure at once where its failure would not take
-- the counter above its limit, else (the last chance) as a token pending
-- until now + pending timeout, whose failure Finish counts. The same as
-- the charge script (redis_charge.go), which runs first, with what it
-- leaves here: the last chance, an attempt beside pending charges that
-- do not saturate its counters, pending charges past their deadline,
-- which are settled first, and ops with a report-only counter.
--
-- A counter of distinct members whose member is in its set already
-- (a username that failed from this source before) neither refuses nor
-- is charged: the attempt adds no distinct name. A report-only counter
-- never refuses: the attempt is counted there at once, and the count
-- that passes its limit "blocks" it, a report that refuses nobody.
--
-- A refusal keeps the transitions it made (a block by a charge it found
-- expired) in the token's marker: a gate that gave up waiting for the
-- answer asks for them afterwards with a Finish of the token (a recall),
-- and announces them. An admitted attempt keeps none there: its own
-- Finish must find no marker.
local op = load_op(true)
settle_expired(op, true)
if blocked_any(op) then
  remember(op, false, true)
  return reply(op, false, false, true)
end
local saturated, last_chance = false, false
for _, c in ipairs(op.counters) do
  if c.member and redis.call('SISMEMBER', c.failed, c.member) == 1 then
    c.present = true
  elseif not c.report then
    c.used = math.min(failures(c), c.limit) + c.pending_n
    if c.used >= c.limit + 1 then
      c.charge = 1
      saturated = true
    end
  end
end
if saturated then
  remember(op, false, true)
  return reply(op, false, false, true)
end
for _, c in ipairs(op.counters) do
  if c.present then
    c.charge = 2 -- counted already: a success removes the member
  elseif c.report then
    count_now(op, c)
    if failures(c) > c.limit and not is_blocked(c) then
      lock_out(op, c, failures(c))
    end
  elseif c.used + 1 == c.limit + 1 then
    charge_pending(op, c)
    last_chance = true
  else
    count_now(op, c)
  end
end
return reply(op, true, last_chance, true)
