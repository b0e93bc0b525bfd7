-- Finish's fast path, run before the shared rules are even defined: a
-- success on counters that a success clears, none blocked and none with a
-- charge pending, deletes their failure counts (which hold this attempt's
-- charge). The settled marker (KEYS[4*n+1]) makes the outcome take effect
-- once. Everything else goes on to redis_finish.lua; settled_now tells it
-- that the marker was set here. The reply is the short form (see
-- redis_common.lua).
local settled_now = false
do
  local n = tonumber(ARGV[6])
  local plain = ARGV[5] == '1'
  for i = 1, n do
    plain = plain and ARGV[6 + 3 * i] ~= '1' -- a kept counter loses only its charge
  end
  if plain then
    local ttl = ARGV[2]
    if ttl == '0' then
      ttl = '86400000'
    end
    if redis.call('SET', KEYS[4 * n + 1], '1', 'NX', 'PX', ttl) then
      settled_now = true
      local found
      if n == 2 then
        found = redis.call('EXISTS', KEYS[2], KEYS[3], KEYS[6], KEYS[7])
      elseif n == 1 then
        found = redis.call('EXISTS', KEYS[2], KEYS[3])
      else
        found = redis.call('EXISTS', KEYS[2], KEYS[3], KEYS[6], KEYS[7], KEYS[10], KEYS[11])
      end
      if found == 0 then
        if n == 2 then
          redis.call('DEL', KEYS[1], KEYS[5])
          return { 0, 0, 2, 0, 0 }
        end
        local out = { 0, 0, n }
        for i = 1, n do
          redis.call('DEL', KEYS[4 * i - 3])
          out[3 + i] = 0
        end
        return out
      end
    end
  end
end
