-- Record: the one-call flow. A blocked counter refuses the attempt and
-- nothing is counted; otherwise success clears (but the counters kept on
-- success; a counter of distinct members loses the member) and failure
-- counts one, and the reply says admitted.
local op = load_op(true)
-- The same outcome again (a gate replaying a call whose reply came too
-- late): what the first call made is replied, nothing is counted twice.
-- Only a call that made a transition leaves a marker (remember): a replay
-- of one that made none counts again.
local admitted = recall(op)
if admitted ~= nil then
  return reply(op, admitted, false)
end
settle_expired(op)
if blocked_any(op) then
  remember(op, false, true)
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
remember(op, true, true)
return reply(op, true, false)
