-- Begin's fast path, run before the shared rules are even defined: when
-- no counter is blocked and none has a charge pending, the attempt is
-- counted as a failure at once on every counter (INCR and the sliding
-- TTL), so that its failure needs no second call and a success clears it.
-- One EXISTS tells both, for all counters. Should a count pass its limit,
-- the attempt would block if it failed: it is a last chance, which must
-- wait for its outcome. The counts are taken back and the full rules
-- below (redis_begin.lua) charge it as pending.
do
  local n = tonumber(ARGV[6])
  local probe = {}
  for i = 1, n do
    probe[2 * i - 1] = KEYS[4 * i - 2] -- blocked
    probe[2 * i] = KEYS[4 * i - 1]     -- pending
  end
  if redis.call('EXISTS', unpack(probe)) == 0 then
    local counts, over = {}, false
    for i = 1, n do
      counts[i] = redis.call('INCR', KEYS[4 * i - 3])
      if counts[i] > tonumber(ARGV[5 + 3 * i]) then
        over = true
      end
    end
    if not over then
      local cooloff = tonumber(ARGV[1])
      local out = { 1, 0, n }
      for i = 1, n do
        if cooloff > 0 then
          redis.call('PEXPIRE', KEYS[4 * i - 3], cooloff)
        end
        local k = 3 + 6 * (i - 1)
        -- failures, no block, counted at once, lockouts not read, none pending
        out[k + 1], out[k + 2], out[k + 3], out[k + 4], out[k + 5], out[k + 6] = counts[i], 0, 0, 2, -1, 0
      end
      return out
    end
    for i = 1, n do
      if counts[i] == 1 then
        redis.call('DEL', KEYS[4 * i - 3]) -- created just now, without a TTL
      else
        redis.call('DECR', KEYS[4 * i - 3])
      end
    end
  end
end
