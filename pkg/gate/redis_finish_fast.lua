-- Finish's fast path, run before the shared rules are even defined: a
-- success on counters that a success clears, none blocked and none with a
-- charge pending, deletes their failure counts (which hold this attempt's
-- charge). The settled marker (KEYS[4*n+1]) makes the outcome take effect
-- once. Everything else goes on to redis_finish.lua; settled_now tells it
-- that the marker was set here.
local settled_now = false
do
  local n = tonumber(ARGV[6])
  local plain = ARGV[5] == '1'
  for i = 1, n do
    if ARGV[6 + 3 * i] == '1' then
      plain = false -- kept on success: only its own charge goes
    end
  end
  if plain then
    local ttl = tonumber(ARGV[2])
    if ttl <= 0 then
      ttl = 86400000
    end
    if redis.call('SET', KEYS[4 * n + 1], '1', 'NX', 'PX', ttl) then
      settled_now = true
      local probe, failed = {}, {}
      for i = 1, n do
        probe[2 * i - 1] = KEYS[4 * i - 2] -- blocked
        probe[2 * i] = KEYS[4 * i - 1]     -- pending
        failed[i] = KEYS[4 * i - 3]
      end
      if redis.call('EXISTS', unpack(probe)) == 0 then
        redis.call('DEL', unpack(failed))
        local out = { 0, 0, n }
        for i = 1, n do
          local k = 3 + 6 * (i - 1)
          out[k + 1], out[k + 2], out[k + 3], out[k + 4], out[k + 5], out[k + 6] = 0, 0, 0, 0, 0, 0
        end
        return out
      end
    end
  end
end
