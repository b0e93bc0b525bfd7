-- Charge: Begin's fast path, a script of its own that sends Redis only
-- what an ordinary login needs (every key and argument of a call costs
-- Redis's one thread time on every login).
--   KEYS   failed, blocked and pending of each counter i: KEYS[3*i-2..3*i];
--          then, with smart lockout, the user's set of familiar sources
--   ARGV[1] attempt cool-off in ms (0: failures never forgotten)
--   ARGV[1+i] the limit of counter i
--   ARGV[n+1+i] (only when some counter has one) the flag of counter i as
--          in redis_common.lua: "0"; "m:<member>" for a counter of
--          distinct members, whose failure adds the member to the set
--          (SADD) rather than one to a count (INCR), a member in the set
--          already adding nothing; "f" or "u" for a counter that applies
--          only to a familiar source, or only to an unfamiliar one. A
--          report-only counter ("r:...") is left to the full rules.
--   ARGV[2n+2] ... (with the familiar key) the familiar arguments of
--          redis_common.lua: their number, the familiar age, the most a
--          user keeps, whether a success teaches, then the sources
-- Refused: a blocked counter, or one whose charges in flight fill its
-- budget (saturated: min(failures, limit) + pending >= limit + 1); the
-- reply is the full form of redis_common.lua. Otherwise, with no charge
-- pending, the attempt is counted as a failure at once on every counter
-- that applies (INCR or SADD, and the sliding TTL), so that its failure
-- needs no second call and a success clears it (redis_clear.lua): the
-- short form {1, 0, n, failures}.
-- The rest is left to the full rules: a charge pending on a counter that
-- is not saturated (or past its deadline, to settle), or a count the
-- attempt would take past its limit (a last chance, whose block waits for
-- its outcome). The script then changes nothing (it undoes its counts)
-- and replies -1, and the caller runs redis_begin.lua.
local n = math.floor(#KEYS / 3)
-- members[i]: counter i's member; skip[i]: its condition does not hold
-- (smart lockout: it is neither read nor written, and replies -1). Both
-- stay nil on a login without them, which then builds no table for them.
local members, skip
if #ARGV > n + 1 then
  local when
  for i = 1, n do
    local flag = ARGV[n + 1 + i]
    if #flag > 1 then
      if flag:byte(1) == 114 then -- 'r': report only
        return -1
      end
      members = members or {}
      members[i] = flag:sub(3)
    elseif flag == 'f' or flag == 'u' then
      when = when or {}
      when[i] = flag
    end
  end
  if when then
    -- The user's set of familiar sources is the last key, the familiar
    -- arguments follow the flags.
    local known, base = false, 2 * n + 2
    if #KEYS % 3 == 1 then
      known = familiar(KEYS[#KEYS], base + 4, base + tonumber(ARGV[base]), tonumber(ARGV[base + 1]), now_ms)
    end
    skip = {}
    local applies = false
    for i = 1, n do
      if when[i] and (when[i] == 'f') ~= known then
        skip[i] = true
      else
        applies = true
      end
    end
    if not applies then
      local out = { 1, 0, n }
      for i = 1, n do
        out[3 + i] = -1
      end
      return out -- no counter applies: nothing to do
    end
  end
end
local found
if not skip and n == 3 then
  found = redis.call('EXISTS', KEYS[2], KEYS[3], KEYS[5], KEYS[6], KEYS[8], KEYS[9])
elseif not skip and n == 2 then
  found = redis.call('EXISTS', KEYS[2], KEYS[3], KEYS[5], KEYS[6])
else
  local k = {}
  for i = 1, n do
    if not (skip and skip[i]) then
      k[#k + 1], k[#k + 2] = KEYS[3 * i - 1], KEYS[3 * i]
    end
  end
  found = redis.call('EXISTS', unpack(k))
end

if found ~= 0 then
  -- Blocked: refused, each counter's block read for the reply. Else a
  -- charge is pending: refused when a counter is saturated (an attacker
  -- holding a last chance open makes this the path of every guess), else
  -- the full rules.
  local out, blocked = { 0, 0, n }, false
  for i = 1, n do
    local k = 3 + 6 * (i - 1)
    out[k + 1], out[k + 2], out[k + 3], out[k + 4], out[k + 5], out[k + 6] = -1, 0, 0, 0, -1, 0
    if not (skip and skip[i]) then
      local ttl, state = redis.call('PTTL', KEYS[3 * i - 1]), 1
      if ttl == -2 then
        state, ttl = 0, 0
      elseif ttl == -1 then
        state, ttl = 2, 0
      end
      blocked = blocked or state ~= 0
      if members and members[i] then
        out[k + 1] = redis.call('SCARD', KEYS[3 * i - 2])
      else
        out[k + 1] = tonumber(redis.call('GET', KEYS[3 * i - 2]) or '0')
      end
      out[k + 2], out[k + 3] = state, ttl
    end
  end
  if blocked then
    return out
  end
  local now = now_ms()
  local saturated = false
  for i = 1, n do
    if not (skip and skip[i]) then
      local k, pending = 3 + 6 * (i - 1), redis.call('ZCARD', KEYS[3 * i])
      if pending > 0 and #redis.call('ZRANGEBYSCORE', KEYS[3 * i], '-inf', '(' .. now, 'LIMIT', 0, 1) > 0 then
        return -1 -- a charge past its deadline, to settle
      end
      out[k + 6] = pending
      local limit = tonumber(ARGV[1 + i])
      if math.min(out[k + 1], limit) + pending >= limit + 1
          and not (members and members[i] and redis.call('SISMEMBER', KEYS[3 * i - 2], members[i]) == 1) then
        out[k + 4], saturated = 1, true
      end
    end
  end
  if not saturated then
    return -1
  end
  return out
end

-- Count the attempt on every counter that applies, then renew the TTLs,
-- unless a count passed its limit.
local out, over, added = { 1, 0, n }, false, nil
for i = 1, n do
  if skip and skip[i] then
    out[3 + i] = -1
  elseif members and members[i] then
    local key = KEYS[3 * i - 2]
    local c = redis.call('SADD', key, members[i])
    if c == 1 then
      added = added or {}
      added[i] = true
    end
    c = redis.call('SCARD', key)
    out[3 + i] = c
    over = over or (added ~= nil and added[i] == true and c > tonumber(ARGV[1 + i]))
  else
    local c = redis.call('INCR', KEYS[3 * i - 2])
    out[3 + i] = c
    over = over or c > tonumber(ARGV[1 + i])
  end
end
if over then
  -- The full rules decide: undo the counts (a key created just now has no
  -- TTL yet, and goes).
  for i = 1, n do
    local key = KEYS[3 * i - 2]
    if skip and skip[i] then
      -- not counted
    elseif members and members[i] then
      if added and added[i] then
        redis.call('SREM', key, members[i])
      end
    elseif out[3 + i] == 1 then
      redis.call('DEL', key)
    else
      redis.call('DECR', key)
    end
  end
  return -1
end
local cooloff = ARGV[1]
if cooloff ~= '0' then
  for i = 1, n do
    if not (skip and skip[i]) then
      redis.call('PEXPIRE', KEYS[3 * i - 2], cooloff)
    end
  end
end
return out
