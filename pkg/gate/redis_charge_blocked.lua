-- The charge script's refusal of a blocked attempt (see redis_charge.go,
-- which puts this block in every charge script it writes): cs holds the
-- op's n counters, each {f = failed key, b = blocked key, l = limit,
-- m = member of a counter of distinct members, skip = its condition does
-- not hold}. It replies the full form of redis_common.lua: each counter's
-- failures and block read (those whose condition does not hold -1),
-- nothing charged.
local out = { 0, 0, n }
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
    if c.m then
      out[k + 1] = redis.call('SCARD', c.f)
    else
      out[k + 1] = tonumber(redis.call('GET', c.f) or '0')
    end
    out[k + 2], out[k + 3] = state, ttl
  end
end
return out
