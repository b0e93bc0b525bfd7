-- Finish: settle the token charged by Begin. Success clears every counter
-- but those kept on success (it only removes their charge); failure counts
-- one. Either takes effect only where the token was still pending: an
-- outcome reported again (on this gate or another one sharing the store),
-- or after its charge expired into a failure, changes nothing.
local op = load_op(true)
settle_expired(op)
for _, c in ipairs(op.counters) do
  if redis.call('ZREM', c.pending, op.token) == 1 then
    if not op.success then
      count_failures(op, c, 1)
    elseif not c.keep then
      clear(op, c)
    end
  end
end
return reply(op, false, false)
