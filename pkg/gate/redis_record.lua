-- Record: the one-call flow. A blocked counter refuses the attempt and
-- nothing is counted; otherwise success clears (but the counters kept on
-- success; a counter of distinct members loses the member) and failure
-- counts one, and the reply says admitted.
local op = load_op(false)
settle_expired(op)
if blocked_any(op) then
  return reply(op, false, false)
end
if op.success then
  learn(op) -- the sources of a login become familiar to its user
end
for _, c in ipairs(op.counters) do
  if not op.success then
    count_failures(op, c, 1)
  elseif c.member then
    remove_member(c)
  elseif not c.keep then
    clear(op, c)
  end
end
return reply(op, true, false)
