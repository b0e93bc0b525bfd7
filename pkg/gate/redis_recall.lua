-- Recall: what a call with this token kept in its settled marker (the
-- blocks a Begin made when it refused: a charge it found expired, settled
-- into the failure that blocks; see redis_begin.lua), read only. A gate
-- that gave up waiting for a Begin's answer asks for them afterwards, and
-- announces them. Nothing is written: a charge that Begin left pending
-- stays for the attempt's own outcome, or its expiry (a Finish here would
-- count it as a failure, and block, before the outcome, a success, came).
local op = load_op(true)
recall(op)
return reply(op, false, false)
