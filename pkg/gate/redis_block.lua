-- Block: an operator blocks one subject for the duration given (0:
-- permanent), replacing any block. Lockout history is not touched.
-- KEYS and ARGV[1] as load_admin_op reads them; ARGV[2] the duration in ms.
local op = load_admin_op()
local c = op.counters[1]
local ms = tonumber(ARGV[2])
local was_blocked = is_blocked(c)
set_block(op, c, ms)
if not was_blocked then
  add_transition(op, c, true, ms, ms == 0, 0, 0)
end
return reply(op, false, false)
