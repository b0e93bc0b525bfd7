-- Record's fast path, run before the shared rules are even defined: when
-- no counter is blocked and none has a charge pending, a success deletes
-- the failure counts it clears, and a failure that takes no count above
-- its limit is counted (INCR and the sliding TTL). Anything else, and a
-- failure that blocks (its counts taken back), goes on to
-- redis_record.lua.
do
  local n = tonumber(ARGV[6])
  local probe, cleared = {}, {}
  for i = 1, n do
    probe[2 * i - 1] = KEYS[4 * i - 2] -- blocked
    probe[2 * i] = KEYS[4 * i - 1]     -- pending
    if ARGV[6 + 3 * i] ~= '1' then
      cleared[#cleared + 1] = KEYS[4 * i - 3]
    end
  end
  if redis.call('EXISTS', unpack(probe)) == 0 then
    local out = { 1, 0, n }
    if ARGV[5] == '1' then
      if #cleared > 0 then
        redis.call('DEL', unpack(cleared))
      end
      for i = 1, n do
        local f = 0
        if ARGV[6 + 3 * i] == '1' then
          f = tonumber(redis.call('GET', KEYS[4 * i - 3]) or '0')
        end
        local k = 3 + 6 * (i - 1)
        out[k + 1], out[k + 2], out[k + 3], out[k + 4], out[k + 5], out[k + 6] = f, 0, 0, 0, 0, 0
      end
      return out
    end
    local counts, over = {}, false
    for i = 1, n do
      counts[i] = redis.call('INCR', KEYS[4 * i - 3])
      if counts[i] > tonumber(ARGV[5 + 3 * i]) then
        over = true
      end
    end
    if not over then
      local cooloff = tonumber(ARGV[1])
      for i = 1, n do
        if cooloff > 0 then
          redis.call('PEXPIRE', KEYS[4 * i - 3], cooloff)
        end
        local k = 3 + 6 * (i - 1)
        out[k + 1], out[k + 2], out[k + 3], out[k + 4], out[k + 5], out[k + 6] = counts[i], 0, 0, 0, 0, 0
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
