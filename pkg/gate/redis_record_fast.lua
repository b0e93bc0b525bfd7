-- Record's fast path, run before the shared rules are even defined: when
-- no counter is blocked and none has a charge pending, a success deletes
-- the failure counts it clears, and a failure that takes no count above
-- its limit is counted (INCR and the sliding TTL). Anything else, and a
-- failure that blocks (its counts taken back), goes on to
-- redis_record.lua. The reply is the short form (see redis_common.lua).
do
  local n = tonumber(ARGV[6])
  local found
  if n == 2 then
    found = redis.call('EXISTS', KEYS[2], KEYS[3], KEYS[6], KEYS[7])
  elseif n == 1 then
    found = redis.call('EXISTS', KEYS[2], KEYS[3])
  else
    found = redis.call('EXISTS', KEYS[2], KEYS[3], KEYS[6], KEYS[7], KEYS[10], KEYS[11])
  end
  if found == 0 then
    local out = { 1, 0, n }
    if ARGV[5] == '1' then
      for i = 1, n do
        if ARGV[6 + 3 * i] == '1' then -- kept on success
          out[3 + i] = tonumber(redis.call('GET', KEYS[4 * i - 3]) or '0')
        else
          redis.call('DEL', KEYS[4 * i - 3])
          out[3 + i] = 0
        end
      end
      return out
    end
    local over = false
    for i = 1, n do
      local f = redis.call('INCR', KEYS[4 * i - 3])
      out[3 + i] = f
      over = over or f > tonumber(ARGV[5 + 3 * i])
    end
    if not over then
      local cooloff = ARGV[1]
      if cooloff ~= '0' then
        for i = 1, n do
          redis.call('PEXPIRE', KEYS[4 * i - 3], cooloff)
        end
      end
      return out
    end
    for i = 1, n do
      if out[3 + i] == 1 then
        redis.call('DEL', KEYS[4 * i - 3]) -- created just now, without a TTL
      else
        redis.call('DECR', KEYS[4 * i - 3])
      end
    end
  end
end
