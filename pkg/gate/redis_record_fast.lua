-- Record's fast path, run before the shared rules are even defined: when
-- no counter is blocked, none has a charge pending and the token's marker
-- is absent (a Record that made a transition, replayed: see remember in
-- redis_common.lua), a success deletes
-- the failure counts it clears, and a failure that takes no count above
-- its limit is counted (INCR and the sliding TTL). Anything else, and a
-- failure that blocks (its counts taken back), goes on to
-- redis_record.lua. The reply is the short form (see redis_common.lua).
-- A counter of distinct members ("m:<member>") adds its member on a
-- failure (a repeat adds nothing) and removes it on a success; a
-- report-only one ("r:...") is left to the full rules.
do
  local n = tonumber(ARGV[6])
  local members, report = {}, false
  for i = 1, n do
    local flag = ARGV[6 + 3 * i]
    if #flag > 1 then
      report = report or flag:sub(1, 1) == 'r'
      members[i] = flag:sub(3)
    end
  end
  local found = 1
  if report or ARGV[7 + 3 * n] ~= '0' then -- smart lockout: its conditions, or a login to learn from
    -- the full rules
  elseif n == 2 then
    found = redis.call('EXISTS', KEYS[2], KEYS[3], KEYS[6], KEYS[7], KEYS[9])
  elseif n == 1 then
    found = redis.call('EXISTS', KEYS[2], KEYS[3], KEYS[5])
  else
    local k = {}
    for i = 1, n do
      k[#k + 1], k[#k + 2] = KEYS[4 * i - 2], KEYS[4 * i - 1]
    end
    k[#k + 1] = KEYS[4 * n + 1]
    found = redis.call('EXISTS', unpack(k))
  end
  if found == 0 then
    local out = { 1, 0, n }
    if ARGV[5] == '1' then
      for i = 1, n do
        if members[i] then
          redis.call('SREM', KEYS[4 * i - 3], members[i])
          out[3 + i] = redis.call('SCARD', KEYS[4 * i - 3])
        elseif ARGV[6 + 3 * i] == '1' then -- kept on success
          out[3 + i] = tonumber(redis.call('GET', KEYS[4 * i - 3]) or '0')
        else
          redis.call('DEL', KEYS[4 * i - 3])
          out[3 + i] = 0
        end
      end
      return out
    end
    local over, added = false, {}
    for i = 1, n do
      local f
      if members[i] then
        added[i] = redis.call('SADD', KEYS[4 * i - 3], members[i]) == 1
        f = redis.call('SCARD', KEYS[4 * i - 3])
      else
        f = redis.call('INCR', KEYS[4 * i - 3])
      end
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
      if members[i] then
        if added[i] then
          redis.call('SREM', KEYS[4 * i - 3], members[i])
        end
      elseif out[3 + i] == 1 then
        redis.call('DEL', KEYS[4 * i - 3]) -- created just now, without a TTL
      else
        redis.call('DECR', KEYS[4 * i - 3])
      end
    end
  end
end
