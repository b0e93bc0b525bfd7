-- Record: the one-call flow. A blocked counter refuses the attempt and
-- nothing is counted; otherwise success clears and failure counts one.
local op = load_op(true)
settle_expired(op)
if blocked_any(op) then
  return reply(op, false, false)
end
for _, c in ipairs(op.counters) do
  if op.success then
    clear(op, c)
  else
    count_failures(op, c, 1)
  end
end
return reply(op, false, false)
