-- Check: block states and failure counts; writes nothing. Go runs it with
-- the "no-writes" flag, so replicas may answer it too.
local op = load_op(false)
return reply(op, false, false)
