-- Clear: Finish's fast path for successes, a script of its own so that it
-- sends Redis only what it needs, and one call for all the successes of
-- a batch (each call costs Redis more than a command).
--   KEYS   per success j, in turn: the token's settled marker, then the
--          failed, blocked and pending keys of each of its n_j counters,
--          then, when it has familiar arguments, the user's set of
--          familiar sources
--   ARGV[1] how long a marker lives, in ms (the pending timeout)
--   ARGV    then per success j: n_j, the number of its counters; or, when
--          one of them counts distinct members or has a condition, -n_j
--          followed by the n_j flags of redis_common.lua ("0",
--          "m:<member>", "f" or "u"), then F, the number of familiar
--          arguments that follow (0: none), and those, as in
--          redis_common.lua (age, most kept, teach, the sources)
-- For each success where no counter that applies is blocked and none has
-- a charge pending (one EXISTS tells both), it deletes the failure counts
-- (this attempt's charge among them; of distinct members, only this
-- attempt's member goes), teaches its sources to its user when told to
-- (as learn in redis_common.lua) and marks the token settled, once: 1 in
-- the reply, or the short form of redis_common.lua {1, 0, n_j, counts}
-- for a success with flags (a counter of distinct members keeps its
-- other names; a counter whose condition does not hold replies -1 and is
-- left as it is). Otherwise (something to lift or settle, or the token
-- settled already) it changes nothing there: -1, and the caller runs
-- redis_finish.lua for that one.
local out, k, a = {}, 0, 2
local now
local function time()
  now = now or now_ms()
  return now
end
while a <= #ARGV do
  local n, flags, fam, fkey = tonumber(ARGV[a]), nil, nil, nil
  if n < 0 then
    n, flags = -n, a
    a = a + n
    local f = tonumber(ARGV[a + 1])
    if f > 0 then
      fam, fkey = a + 2, KEYS[k + 2 + 3 * n]
    end
    a = a + 1 + f
  end
  a = a + 1
  -- skip[i]: counter i's condition does not hold (smart lockout).
  local skip
  if flags then
    local conditional = false
    for i = 1, n do
      local flag = ARGV[flags + i]
      conditional = conditional or flag == 'f' or flag == 'u'
    end
    if conditional then
      -- Without familiar arguments no source is familiar.
      local known = fam ~= nil and familiar(fkey, fam + 3, fam + tonumber(ARGV[fam - 1]) - 1, tonumber(ARGV[fam]), time)
      skip = {}
      for i = 1, n do
        local flag = ARGV[flags + i]
        skip[i] = (flag == 'f' and not known) or (flag == 'u' and known)
      end
    end
  end
  local found
  if n == 2 and not skip then
    found = redis.call('EXISTS', KEYS[k + 3], KEYS[k + 4], KEYS[k + 6], KEYS[k + 7])
  elseif n == 1 and not skip then
    found = redis.call('EXISTS', KEYS[k + 3], KEYS[k + 4])
  else
    local ks = {}
    for i = 1, n do
      if not (skip and skip[i]) then
        ks[#ks + 1], ks[#ks + 2] = KEYS[k + 3 * i], KEYS[k + 3 * i + 1]
      end
    end
    found = #ks > 0 and redis.call('EXISTS', unpack(ks)) or 0
  end
  if found > 0 or not redis.call('SET', KEYS[k + 1], '1', 'NX', 'PX', ARGV[1]) then
    out[#out + 1] = -1
  elseif n == 2 and not flags then
    redis.call('DEL', KEYS[k + 2], KEYS[k + 5])
    out[#out + 1] = 1
  else
    local counts, del = { 1, 0, n }, {}
    for i = 1, n do
      local flag = flags and ARGV[flags + i] or '0'
      if skip and skip[i] then
        counts[3 + i] = -1
      elseif #flag > 1 then
        redis.call('SREM', KEYS[k + 3 * i - 1], flag:sub(3))
        counts[3 + i] = redis.call('SCARD', KEYS[k + 3 * i - 1])
      else
        del[#del + 1] = KEYS[k + 3 * i - 1]
        counts[3 + i] = 0
      end
    end
    if #del > 0 then
      redis.call('DEL', unpack(del))
    end
    if fam and ARGV[fam + 2] == '1' then
      teach(fkey, fam + 3, fam + tonumber(ARGV[fam - 1]) - 1, time(), tonumber(ARGV[fam]), tonumber(ARGV[fam + 1]))
    end
    out[#out + 1] = flags and counts or 1
  end
  k = k + 1 + 3 * n + (fam and 1 or 0)
end
return out
