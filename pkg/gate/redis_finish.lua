-- Finish: settle the outcome of an attempt charged by Begin, once: the
-- settled marker refuses a token reported again (on this gate or another
-- one sharing the store), which changes nothing but replies the
-- transitions the first report made (remember), for a gate that never
-- read that reply to announce them.
--
-- Where the token is pending (a last chance), a failure counts now and
-- may block; a success clears. Where Begin counted the attempt at once, a
-- failure is counted already and a success clears the counter (its
-- failures, this charge among them, and its block). A counter kept on
-- success only loses this attempt's charge; one of distinct members loses
-- this attempt's member (its username logged in). A charge found expired is a
-- failure (settle_expired counts it), which a success reported now does
-- not undo.
local op = load_op(true)
if settled(op) then
  return reply(op, false, false) -- with the transitions the first made
end
settle_expired(op, false, op.token)
for _, c in ipairs(op.counters) do
  local pending = redis.call('ZREM', c.pending, op.token) == 1
  if not op.success then
    -- The Finish round of a Record (op.record) counts the failure its
    -- reserve admitted even where the charge is gone: a call with the
    -- same token (another instance's replay) that was refused released it
    -- in between. Not one found expired: settle_expired counted it.
    if pending or (op.record and not c.expired_token) then
      count_failures(op, c, 1)
    end
  elseif c.expired_token then
    -- counted as the failure it became: a late success changes nothing
  elseif not c.keep then
    clear(op, c)
  elseif pending then
    -- the charge was pending: removing it is all
  elseif c.member then
    remove_member(c)
  elseif failures(c) > 0 then
    c.failed_n = redis.call('DECR', c.failed)
  end
end
local late = false
for _, c in ipairs(op.counters) do
  late = late or c.expired_token
end
if op.success and not late then
  learn(op) -- the sources of a login become familiar to its user
end
remember(op, false, op.record)
return reply(op, false, false)
