-- Blocked: list the subjects of one kind blocked now, soonest end first.
--   KEYS[1] the blocked index of the kind
--   ARGV[1] the blocked key of a subject minus the subject ("<prefix>:blocked:<kind>:")
--   ARGV[2] at most this many subjects (0: all)
-- Reply: flat array subject, ttl ms (-1: permanent), subject, ttl, ...
-- Index entries whose block ended or whose block key is gone (an operator's
-- DEL) are removed on the way, so the cost follows the blocked subjects.
-- The block keys are named from the index, so this script only suits a
-- single Redis (or a cluster where the prefix holds a hash tag).
local index = KEYS[1]
local limit = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', index, '-inf', now_ms())
local out, found, start, batch = {}, 0, 0, 128
while true do
  local members = redis.call('ZRANGE', index, start, start + batch - 1)
  local kept = 0
  for _, subject in ipairs(members) do
    local ttl = redis.call('PTTL', ARGV[1] .. subject)
    if ttl == -2 then
      redis.call('ZREM', index, subject)
    else
      kept = kept + 1
      found = found + 1
      out[#out + 1] = subject
      out[#out + 1] = ttl
      if limit > 0 and found >= limit then
        return out
      end
    end
  end
  if #members < batch then
    return out
  end
  start = start + kept
end
