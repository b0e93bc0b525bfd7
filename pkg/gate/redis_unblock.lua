-- Unblock: an operator lifts one subject's block and forgets its failures,
-- pending charges and lockout history. KEYS and ARGV as load_admin_op
-- reads them.
local op = load_admin_op()
local c = op.counters[1]
redis.call('DEL', c.pending, c.lockouts)
clear(op, c)
return reply(op, false, false)
