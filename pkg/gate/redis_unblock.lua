-- Unblock: an operator lifts one counter's block and forgets its failures,
-- pending charges and lockout history.
local op = load_op(false)
local c = op.counters[1]
redis.call('DEL', c.pending, c.lockouts)
clear(op, c)
return reply(op, false, false)
