-- Unindex: drop entries of a blocked index whose block is gone, but only
-- if the entry still has the score it had when it was found stale, so a
-- block set again in the meantime (a new end, hence a new score) stays.
--   KEYS[1] the blocked index of one kind
--   ARGV    subject, score, subject, score, ...
-- Reply: the number of entries removed.
local removed = 0
for i = 1, #ARGV, 2 do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) == tonumber(ARGV[i + 1]) then
    removed = removed + redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
return removed
