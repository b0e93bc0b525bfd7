-- Block: an operator blocks one counter for the single cool-off given
-- (0: permanent), replacing any block. Lockout history is not touched.
local op = load_op(false)
local c = op.counters[1]
local ms = op.cooloffs[1]
local was_blocked = is_blocked(c)
set_block(op, c, ms)
if not was_blocked then
  add_transition(op, c, true, ms, ms == 0, 0, 0)
end
return reply(op, false, false)
