-- Begin's fast path, run before the shared rules are even defined: when
-- no counter is blocked and none has a charge pending, the attempt is
-- counted as a failure at once on every counter (INCR and the sliding
-- TTL), so that its failure needs no second call and a success clears it.
-- One EXISTS tells both, for all counters. Should a count pass its limit,
-- the attempt would block if it failed: it is a last chance, which must
-- wait for its outcome. The counts are taken back and the full rules
-- below (redis_begin.lua) charge it as pending.
--
-- Its reply is the short form {1, 0, n, failures of each counter} (see
-- redis_common.lua). Every table and call here costs Redis's one thread
-- time on every login, hence the two-counter case written out.
do
  local n = tonumber(ARGV[6])
  local found
  if n == 2 then
    found = redis.call('EXISTS', KEYS[2], KEYS[3], KEYS[6], KEYS[7])
  elseif n == 1 then
    found = redis.call('EXISTS', KEYS[2], KEYS[3])
  else
    local probe = {}
    for i = 1, n do
      probe[2 * i - 1], probe[2 * i] = KEYS[4 * i - 2], KEYS[4 * i - 1] -- blocked, pending
    end
    found = redis.call('EXISTS', unpack(probe))
  end
  if found == 0 then
    local out, over = { 1, 0, n }, false
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
