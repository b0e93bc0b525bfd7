-- Reindex: one SCAN step over the block keys of one kind, adding each to
-- the blocked index (scored by its end in ms, +inf when permanent), so
-- blocks set by hand (an operator's SET <prefix>:blocked:ip:<ip>, as with
-- django-defender) are listed too.
--   KEYS[1] the blocked index of the kind
--   ARGV[1] SCAN cursor ("0" to start)
--   ARGV[2] MATCH pattern of the kind's block keys (glob-escaped prefix .. "*")
--   ARGV[3] the block key of a subject minus the subject
--   ARGV[4] SCAN COUNT hint
-- Reply: next cursor ("0" when done), number of subjects newly indexed.
-- Like Blocked, it names keys not in KEYS: it only suits a single Redis.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local r = redis.call('SCAN', ARGV[1], 'MATCH', ARGV[2], 'COUNT', ARGV[4])
local added = 0
for _, key in ipairs(r[2]) do
  local ttl = redis.call('PTTL', key)
  if ttl ~= -2 then
    local score = '+inf'
    if ttl >= 0 then
      score = now + ttl
    end
    added = added + redis.call('ZADD', KEYS[1], score, string.sub(key, #ARGV[3] + 1))
  end
end
return { r[1], added }
