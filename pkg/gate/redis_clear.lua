-- Clear: Finish's fast path for successes, a script of its own so that it
-- sends Redis only what it needs, and one call for all the successes of
-- a batch (each call costs Redis more than a command).
--   KEYS   per success j, in turn: the token's settled marker, then the
--          failed, blocked and pending keys of each of its n_j counters
--   ARGV[1] how long a marker lives, in ms (the pending timeout)
--   ARGV    then per success j: n_j, the number of its counters; or, when
--          one of them counts distinct members, -n_j followed by the n_j
--          flags of redis_common.lua ("0", or "m:<member>")
-- For each success where no counter is blocked and none has a charge
-- pending (one EXISTS tells both), it deletes the failure counts (this
-- attempt's charge among them; of distinct members, only this attempt's
-- member goes) and marks the token settled, once: 1 in
-- the reply. Otherwise (something to lift or settle, or the token
-- settled already) it changes nothing there: -1, and the caller runs
-- redis_finish.lua for that one. A success with flags is answered
-- {1, count of each counter} instead of 1: a counter of distinct members
-- keeps its other names.
local out, k, a = {}, 0, 2
while a <= #ARGV do
  local n, flags = tonumber(ARGV[a]), nil
  if n < 0 then
    n, flags = -n, a
    a = a + n
  end
  a = a + 1
  local found
  if n == 2 then
    found = redis.call('EXISTS', KEYS[k + 3], KEYS[k + 4], KEYS[k + 6], KEYS[k + 7])
  elseif n == 1 then
    found = redis.call('EXISTS', KEYS[k + 3], KEYS[k + 4])
  else
    local ks = {}
    for i = 1, n do
      ks[#ks + 1], ks[#ks + 2] = KEYS[k + 3 * i], KEYS[k + 3 * i + 1]
    end
    found = redis.call('EXISTS', unpack(ks))
  end
  if found > 0 or not redis.call('SET', KEYS[k + 1], '1', 'NX', 'PX', ARGV[1]) then
    out[#out + 1] = -1
  else
    if n == 2 and not flags then
      redis.call('DEL', KEYS[k + 2], KEYS[k + 5])
      out[#out + 1] = 1
    else
      local counts, del = { 1 }, {}
      for i = 1, n do
        local flag = flags and ARGV[flags + i] or '0'
        if #flag > 1 then
          redis.call('SREM', KEYS[k + 3 * i - 1], flag:sub(3))
          counts[i + 1] = redis.call('SCARD', KEYS[k + 3 * i - 1])
        else
          del[#del + 1] = KEYS[k + 3 * i - 1]
          counts[i + 1] = 0
        end
      end
      if #del > 0 then
        redis.call('DEL', unpack(del))
      end
      out[#out + 1] = flags and counts or 1
    end
  end
  k = k + 1 + 3 * n
end
return out
