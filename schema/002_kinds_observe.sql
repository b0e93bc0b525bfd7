-- The gate's kinds of spraying and smart lockout, observe mode, shared
-- sources, and the reason of an unblock by the user.
--
-- 18.16 has no ADD COLUMN IF NOT EXISTS: record.Migrate (schema.Exec)
-- counts an ADD COLUMN whose column exists already as done, so this file
-- may run twice (two recorders at once, or again after a failure halfway).
-- MODIFY COLUMN to the type a column has already changes nothing.
--
-- blocks.kind takes every pkg/gate Kind: spray (a source that failed on
-- many usernames), spray_net (the same over an IPv6 network), spray_shared
-- (spraying from a shared address: a report, it refuses nobody) and
-- username_familiar (a user's block for the sources familiar to them).
-- blocks.reason takes 'user': an unblock by the user, from an e-mail link.
-- Values are only added: the stored ones keep their meaning.
ALTER TABLE defender.blocks MODIFY COLUMN kind Enum8('ip' = 1, 'username' = 2, 'pair' = 3, 'spray' = 4, 'spray_net' = 5, 'spray_shared' = 6, 'username_familiar' = 7);
ALTER TABLE defender.blocks MODIFY COLUMN reason Enum8('auto' = 1, 'admin' = 2, 'blacklist' = 3, 'user' = 4);

-- observe is 1 for observe mode (DEFENDER_MODE=observe): a would-be block
-- or unblock, or an attempt let through whatever the decision. Rows
-- written before read 0, as they should.
ALTER TABLE defender.blocks ADD COLUMN observe UInt8;
ALTER TABLE defender.attempts ADD COLUMN observe UInt8;

-- shared names the shared egress list the attempt's address is on
-- ('cgnat', 'icloud-relay', 'tor', an operator list; '' none); familiar is
-- 1 when the source had logged in as this user before.
ALTER TABLE defender.attempts ADD COLUMN shared String;
ALTER TABLE defender.attempts ADD COLUMN familiar UInt8;
