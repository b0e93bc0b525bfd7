-- The charge script's answer when a count would pass its limit (see
-- redis_charge.go, which puts this block in every charge script it
-- writes): cs holds the op's n counters as in redis_charge_blocked.lua,
-- with c = the count after this attempt and d = true when this attempt
-- added its member; PL is the length of the store's key prefix.
-- It undoes the attempt's counts (a key created just now has no TTL yet,
-- and goes), then reads each counter's pending set, which only the full
-- rules write (a last chance; its key is the failed key's, "pending" for
-- "failed": the same hash tag, so the same slot). A charge past its
-- deadline, to settle, or no counter saturated (min(failures, limit) +
-- pending >= limit + 1: this is the last chance) leaves the attempt to
-- the full rules, -1. A saturated counter refuses here, in the full form
-- of redis_common.lua: an attacker holding a last chance open gets one
-- script per guess.
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
local out, saturated, now = { 0, 0, n }, false, nil
for i = 1, n do
  local c, k = cs[i], 3 + 6 * (i - 1)
  out[k + 1], out[k + 2], out[k + 3], out[k + 4], out[k + 5], out[k + 6] = -1, 0, 0, 0, -1, 0
  if not c.skip then
    local pk = c.f:sub(1, PL) .. ':pending:' .. c.f:sub(PL + 9)
    local pending = redis.call('ZCARD', pk)
    if pending > 0 then
      if not now then
        local t = redis.call('TIME')
        now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
      end
      if #redis.call('ZRANGEBYSCORE', pk, '-inf', '(' .. now, 'LIMIT', 0, 1) > 0 then
        return -1
      end
    end
    local before = c.c - 1
    if c.m and not c.d then
      before = c.c
    end
    out[k + 1], out[k + 6] = before, pending
    if math.min(before, c.l) + pending >= c.l + 1 and not (c.m and not c.d) then
      out[k + 4], saturated = 1, true
    end
  end
end
if saturated then
  return out
end
return -1
