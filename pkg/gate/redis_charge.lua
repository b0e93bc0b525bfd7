-- Charge: Begin, a script of its own that sends Redis only what a login
-- needs (every key and argument of a call costs Redis's one thread time
-- on every login), so an ordinary login is five commands.
--   KEYS   failed, blocked, pending of each counter i: KEYS[3*i-2..3*i];
--          then the lockouts of each counter: KEYS[3*n+i]
--   ARGV[1] attempt cool-off in ms (0: failures never forgotten)
--   ARGV[1+i] the limit of counter i
--   ARGV[n+2] the token; ARGV[n+3] the pending timeout in ms (0: never)
--   ARGV[n+3+i] (only when some counter has one) the flag of counter i as
--          in redis_common.lua: "0", or "m:<member>" for a counter of
--          distinct members, whose failure adds the member to the set
--          (SADD) rather than one to a count (INCR); a member in the set
--          already adds nothing, so it neither refuses nor is charged.
--          A report-only counter ("r:...") is left to the full rules.
-- Refused: a blocked counter, or one whose charges in flight fill its
-- budget (saturated: min(failures, limit) + pending >= limit + 1).
-- Otherwise the attempt is charged on every counter: counted as a failure
-- at once (INCR and the sliding TTL) where its failure would not take the
-- count above the limit, so that its failure needs no second call and a
-- success clears it (redis_clear.lua); as a token pending until now +
-- pending timeout where it would (the last chance: its block waits for
-- its outcome, which redis_finish.lua writes).
-- Reply: when nothing was blocked or pending and the attempt is counted
-- everywhere, the short form of redis_common.lua {1, 0, n, failures};
-- else its full form (lockouts read for a last chance only, else -1).
-- A pending charge past its deadline is left to the full rules: the
-- script changes nothing and replies -1 (the caller runs redis_begin.lua,
-- which settles it).
local n = math.floor(#KEYS / 4)
local members, when = {}, {}
if #ARGV > n + 3 then
  for i = 1, n do
    local flag = ARGV[n + 3 + i]
    if flag == 'f' or flag == 'u' then
      when[i] = flag
    elseif #flag > 1 then
      if flag:sub(1, 1) == 'r' then
        return -1
      end
      members[i] = flag:sub(3)
    end
  end
end
-- Smart lockout: with the user's set of familiar sources as the last
-- key (and the familiar arguments after the flags, as redis_common.lua
-- reads them), the counters whose condition does not hold are left out:
-- ids are those that apply, and the others reply -1 failures.
local ids, all, familiar = {}, true, false
if #KEYS % 4 == 1 then
  local base = 2 * n + 4
  for j = base + 4, base + tonumber(ARGV[base]) do
    local score = redis.call('ZSCORE', KEYS[#KEYS], ARGV[j])
    if score then
      local t = redis.call('TIME')
      if tonumber(score) >= tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(ARGV[base + 1]) then
        familiar = true
        break
      end
    end
  end
end
for i = 1, n do
  if when[i] == nil or (when[i] == 'f') == familiar then
    ids[#ids + 1] = i
  else
    all = false
  end
end
-- skipped fills the reply of the counters left out: out of the short
-- form (per counter one value, from 4) or the full one (six, from 4).
local function skipped(out, full)
  if all then
    return out
  end
  local on = {}
  for _, i in ipairs(ids) do
    on[i] = true
  end
  for i = 1, n do
    if not on[i] then
      if full then
        local k = 3 + 6 * (i - 1)
        out[k + 1], out[k + 2], out[k + 3], out[k + 4], out[k + 5], out[k + 6] = -1, 0, 0, 0, -1, 0
      else
        out[3 + i] = -1
      end
    end
  end
  return out
end
if #ids == 0 then
  return skipped({ 1, 0, n }, false) -- no counter applies: nothing to do
end
local found
if not all then
  local k = {}
  for _, i in ipairs(ids) do
    k[#k + 1], k[#k + 2] = KEYS[3 * i - 1], KEYS[3 * i]
  end
  found = redis.call('EXISTS', unpack(k))
elseif n == 2 then
  found = redis.call('EXISTS', KEYS[2], KEYS[3], KEYS[5], KEYS[6])
elseif n == 1 then
  found = redis.call('EXISTS', KEYS[2], KEYS[3])
else
  local k = {}
  for _, i in ipairs(ids) do
    k[#k + 1], k[#k + 2] = KEYS[3 * i - 1], KEYS[3 * i]
  end
  found = redis.call('EXISTS', unpack(k))
end
local cooloff = ARGV[1]

-- add counts the attempt on counter i at once, without its TTL: INCR, or
-- for distinct members SADD (added[i] when the member is new) and SCARD.
-- It reports whether the count passed the limit.
local counts, added, over = {}, {}, false
local function add(i)
  if members[i] then
    added[i] = redis.call('SADD', KEYS[3 * i - 2], members[i]) == 1
    counts[i] = redis.call('SCARD', KEYS[3 * i - 2])
    return added[i] and counts[i] > tonumber(ARGV[1 + i])
  end
  counts[i] = redis.call('INCR', KEYS[3 * i - 2])
  return counts[i] > tonumber(ARGV[1 + i])
end
if found == 0 then
  for _, i in ipairs(ids) do
    over = add(i) or over
  end
  if not over then
    local out = { 1, 0, n }
    for _, i in ipairs(ids) do
      if cooloff ~= '0' then
        redis.call('PEXPIRE', KEYS[3 * i - 2], cooloff)
      end
      out[3 + i] = counts[i]
    end
    return skipped(out, false)
  end
end

-- Past the ordinary login: the rules' helpers, built only now.
-- pend charges the token on counter i as pending, and fills its reply.
local function pend(out, i, pending)
  local timeout = tonumber(ARGV[n + 3])
  local deadline = '+inf'
  if timeout > 0 then
    local t = redis.call('TIME')
    deadline = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + timeout
  end
  redis.call('ZADD', KEYS[3 * i], deadline, ARGV[n + 2])
  if timeout > 0 and cooloff ~= '0' then
    -- Once every charge is overdue by the attempt cool-off, the failures
    -- they would have become are forgotten too: the set may go.
    redis.call('PEXPIRE', KEYS[3 * i], timeout + tonumber(cooloff))
  end
  local k = 3 + 6 * (i - 1)
  out[k + 4], out[k + 5], out[k + 6] = 3, tonumber(redis.call('GET', KEYS[3 * n + i]) or '0'), pending + 1
end

-- count charges the attempt on counter i as a failure at once.
local function count(i)
  add(i)
  if cooloff ~= '0' then
    redis.call('PEXPIRE', KEYS[3 * i - 2], cooloff)
  end
  return counts[i]
end

if found == 0 then
  -- A last chance on the counters the count would pass: pending there.
  local out = { 1, 1, n }
  for _, i in ipairs(ids) do
    local k = 3 + 6 * (i - 1)
    out[k + 2], out[k + 3], out[k + 5], out[k + 6] = 0, 0, -1, 0
    if counts[i] > tonumber(ARGV[1 + i]) and (added[i] or not members[i]) then
      if members[i] then
        redis.call('SREM', KEYS[3 * i - 2], members[i])
      elseif counts[i] == 1 then
        redis.call('DEL', KEYS[3 * i - 2]) -- created just now, without a TTL
      else
        redis.call('DECR', KEYS[3 * i - 2])
      end
      out[k + 1] = counts[i] - 1
      pend(out, i, 0)
    else
      if cooloff ~= '0' then
        redis.call('PEXPIRE', KEYS[3 * i - 2], cooloff)
      end
      out[k + 1], out[k + 4] = counts[i], 2
    end
  end
  return skipped(out, true)
end

-- Something is blocked or pending.
local out, blocked = { 0, 0, n }, false
local f = {}
for _, i in ipairs(ids) do
  local ttl = redis.call('PTTL', KEYS[3 * i - 1])
  local state = 1
  if ttl == -2 then
    state, ttl = 0, 0
  elseif ttl == -1 then
    state, ttl = 2, 0
  end
  blocked = blocked or state ~= 0
  if members[i] then
    f[i] = redis.call('SCARD', KEYS[3 * i - 2])
  else
    f[i] = tonumber(redis.call('GET', KEYS[3 * i - 2]) or '0')
  end
  local k = 3 + 6 * (i - 1)
  out[k + 1], out[k + 2], out[k + 3], out[k + 4], out[k + 5], out[k + 6] = f[i], state, ttl, 0, -1, 0
end
if blocked then
  return skipped(out, true)
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local saturated, used, present = false, {}, {}
for _, i in ipairs(ids) do
  local pending = redis.call('ZCARD', KEYS[3 * i])
  if pending > 0 and #redis.call('ZRANGEBYSCORE', KEYS[3 * i], '-inf', '(' .. now, 'LIMIT', 0, 1) > 0 then
    return -1
  end
  local limit = tonumber(ARGV[1 + i])
  used[i] = math.min(f[i], limit) + pending
  out[3 + 6 * (i - 1) + 6] = pending
  present[i] = members[i] and redis.call('SISMEMBER', KEYS[3 * i - 2], members[i]) == 1
  if used[i] >= limit + 1 and not present[i] then
    out[3 + 6 * (i - 1) + 4] = 1
    saturated = true
  end
end
if saturated then
  return skipped(out, true)
end
out[1] = 1
for _, i in ipairs(ids) do
  local k = 3 + 6 * (i - 1)
  if present[i] then
    out[k + 4] = 2 -- counted already: a success removes the member
  elseif used[i] + 1 == tonumber(ARGV[1 + i]) + 1 then
    out[2] = 1
    pend(out, i, out[k + 6])
  else
    out[k + 1], out[k + 4] = count(i), 2
  end
end
return skipped(out, true)
