-- The charge script's answer when a block key or a pending set of a
-- counter that applies exists (see redis_charge.go, which puts this block
-- in every charge script it writes): cs holds the op's n counters, each
-- {f = failed key, b = blocked key, p = pending key, l = limit, m = member
-- of a counter of distinct members, skip = its condition does not hold}.
-- Blocked: refused, with each counter's failures and block read. Else a
-- charge is pending (a last chance, or an attempt of a first-protocol
-- gate): a charge past its deadline, to settle, leaves the attempt to the
-- full rules (-1); a saturated counter (min(failures, limit) + pending >=
-- limit + 1, its member not counted already) refuses here, so that an
-- attacker holding a last chance open gets one script per guess; else the
-- full rules (-1), which count the attempt beside the pending charges.
-- Refusals reply the full form of redis_common.lua; nothing is charged.
local out, blocked = { 0, 0, n }, false
for i = 1, n do
  local c, k = cs[i], 3 + 6 * (i - 1)
  out[k + 1], out[k + 2], out[k + 3], out[k + 4], out[k + 5], out[k + 6] = -1, 0, 0, 0, -1, 0
  if not c.skip then
    local ttl, state = redis.call('PTTL', c.b), 1
    if ttl == -2 then
      state, ttl = 0, 0
    elseif ttl == -1 then
      state, ttl = 2, 0
    end
    blocked = blocked or state ~= 0
    if c.m then
      out[k + 1] = redis.call('SCARD', c.f)
    else
      out[k + 1] = tonumber(redis.call('GET', c.f) or '0')
    end
    out[k + 2], out[k + 3] = state, ttl
  end
end
if blocked then
  return out
end
local t = redis.call('TIME')
local now, saturated = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), false
for i = 1, n do
  local c, k = cs[i], 3 + 6 * (i - 1)
  if not c.skip then
    local pending = redis.call('ZCARD', c.p)
    if pending > 0 and #redis.call('ZRANGEBYSCORE', c.p, '-inf', '(' .. now, 'LIMIT', 0, 1) > 0 then
      return -1
    end
    out[k + 6] = pending
    if math.min(out[k + 1], c.l) + pending >= c.l + 1
        and not (c.m and redis.call('SISMEMBER', c.f, c.m) == 1) then
      out[k + 4], saturated = 1, true
    end
  end
end
if saturated then
  return out
end
return -1
