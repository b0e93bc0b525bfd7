-- Finish: settle the token charged by Begin. Success clears every counter
-- but those kept on success (it only removes their charge); failure counts
-- one on each counter where the token was still pending.
local op = load_op(true)
settle_expired(op)
for _, c in ipairs(op.counters) do
  local charged = redis.call('ZREM', c.pending, op.token) == 1
  if op.success then
    if not c.keep then
      clear(op, c)
    end
  elseif charged then
    count_failures(op, c, 1)
  end
end
return reply(op, false, false)
