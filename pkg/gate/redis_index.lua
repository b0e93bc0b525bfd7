-- Index: list a block in the blocked index of its kind, scored by its end
-- in ms (RedisClusterStore, which writes the index apart from the block).
-- A score only rises, and every write changes it:
-- - a block replayed late (the same outcome reported again gets the first
--   report's transitions back) must not lower the entry of a newer,
--   longer block of the same subject: Blocked would drop that block a
--   minute after the earlier end while it still holds;
-- - a block set again while Blocked holds the entry for stale must change
--   its score, or Unindex's compare-and-delete drops the new block's entry.
-- An entry left too high (a block shortened by hand) only sorts late until
-- Blocked finds its key gone.
--   KEYS[1] the blocked index of the kind
--   ARGV[1] the block's end in ms, ARGV[2] the subject
-- Reply: 1. (A Lua number passed to ZADD goes as its exact shortest form;
-- tostring would round a permanent block's 16 digits.)
local score = tonumber(ARGV[1])
local current = redis.call('ZSCORE', KEYS[1], ARGV[2])
if current and tonumber(current) >= score then
  score = tonumber(current) + 1
end
redis.call('ZADD', KEYS[1], score, ARGV[2])
return 1
