-- Charge: Begin's fast path, a script of its own so that an ordinary
-- login sends Redis only what it needs (every key and argument of a call
-- costs Redis's one thread time on every login).
--   KEYS   failed, blocked, pending of each counter i: KEYS[3*i-2..3*i]
--   ARGV[1] attempt cool-off in ms (0: failures never forgotten)
--   ARGV[1+i] the limit of counter i
-- When no counter is blocked and none has a charge pending (one EXISTS
-- tells both), the attempt is counted as a failure at once on every
-- counter: INCR and the sliding TTL. Its failure needs no second call;
-- a success clears it (redis_clear.lua). Reply: the short form of
-- redis_common.lua, {1, 0, n, the failures of each counter}.
-- With something blocked or pending it answers in the full form of
-- redis_common.lua (lockouts not read): a block refuses; charges pending
-- that fill a budget refuse (saturated); below every limit the attempt is
-- counted at once all the same. What is left, a last chance (a count that
-- would pass its limit: its block must wait for its outcome, as a pending
-- charge) or an expired charge to settle, it leaves unchanged, replying
-- -1: the caller runs the full rules (redis_begin.lua).
local n = #KEYS / 3
local found
if n == 2 then
  found = redis.call('EXISTS', KEYS[2], KEYS[3], KEYS[5], KEYS[6])
elseif n == 1 then
  found = redis.call('EXISTS', KEYS[2], KEYS[3])
else
  found = redis.call('EXISTS', KEYS[2], KEYS[3], KEYS[5], KEYS[6], KEYS[8], KEYS[9])
end
if found == 0 then
  local out, over = { 1, 0, n }, false
  for i = 1, n do
    local f = redis.call('INCR', KEYS[3 * i - 2])
    out[3 + i] = f
    over = over or f > tonumber(ARGV[1 + i])
  end
  if not over then
    if ARGV[1] ~= '0' then
      for i = 1, n do
        redis.call('PEXPIRE', KEYS[3 * i - 2], ARGV[1])
      end
    end
    return out
  end
  for i = 1, n do
    if out[3 + i] == 1 then
      redis.call('DEL', KEYS[3 * i - 2]) -- created just now, without a TTL
    else
      redis.call('DECR', KEYS[3 * i - 2])
    end
  end
  return -1
end
-- Something is blocked or pending: the full reply form.
local out, blocked = { 0, 0, n }, false
local f, ttls = {}, {}
for i = 1, n do
  local ttl = redis.call('PTTL', KEYS[3 * i - 1])
  local state = 1
  if ttl == -2 then
    state, ttl = 0, 0
  elseif ttl == -1 then
    state, ttl = 2, 0
  end
  blocked = blocked or state ~= 0
  f[i] = tonumber(redis.call('GET', KEYS[3 * i - 2]) or '0')
  local k = 3 + 6 * (i - 1)
  out[k + 1], out[k + 2], out[k + 3], out[k + 4], out[k + 5], out[k + 6] = f[i], state, ttl, 0, -1, 0
end
if blocked then
  return out
end
-- Charges pending: refused if they fill a budget (saturated), counted at
-- once if the attempt stays below every limit. A charge to settle (expired)
-- or a last chance to charge as pending is left to the full rules.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local saturated = false
for i = 1, n do
  local pending = redis.call('ZCARD', KEYS[3 * i])
  if pending > 0 and #redis.call('ZRANGEBYSCORE', KEYS[3 * i], '-inf', '(' .. now, 'LIMIT', 0, 1) > 0 then
    return -1
  end
  local limit = tonumber(ARGV[1 + i])
  local used = math.min(f[i], limit) + pending
  local k = 3 + 6 * (i - 1)
  out[k + 6] = pending
  if used >= limit + 1 then
    out[k + 4] = 1
    saturated = true
  elseif used + 1 == limit + 1 then
    return -1
  end
end
if saturated then
  return out
end
out[1] = 1
for i = 1, n do
  local k = 3 + 6 * (i - 1)
  out[k + 1], out[k + 4] = redis.call('INCR', KEYS[3 * i - 2]), 2
  if ARGV[1] ~= '0' then
    redis.call('PEXPIRE', KEYS[3 * i - 2], ARGV[1])
  end
end
return out
