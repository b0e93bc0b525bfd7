-- The charge script's answer when a count would pass its limit (see
-- redis_charge.go, which puts this block in every charge script it
-- writes): cs holds the op's n counters, each {f = failed key, c = the
-- count after this attempt, m = member of a counter of distinct members,
-- d = true when this attempt added it, skip = its condition does not
-- hold}. It undoes the attempt's counts (a key created just now has no
-- TTL yet, and goes) and leaves the attempt to the full rules (-1): the
-- last chance, whose block waits for its outcome. No charge is pending on
-- a counter that applies here (the script checked), so none is saturated.
for i = 1, n do
  local c = cs[i]
  if c.skip then
    -- not counted
  elseif c.m then
    if c.d then
      redis.call('SREM', c.f, c.m)
    end
  elseif c.c == 1 then
    redis.call('DEL', c.f)
  else
    redis.call('DECR', c.f)
  end
end
return -1
