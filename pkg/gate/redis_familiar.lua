-- redis_familiar.lua: smart lockout's two rules on the user's set of
-- familiar sources (a sorted set, each source scored by the time in ms of
-- its latest login as the user), put in front of every script that reads
-- or teaches it: the charge and clear scripts and redis_common.lua.

-- now_ms is the server's clock in ms.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- familiar reports whether one of the sources ARGV[from..to] logged in as
-- the user since oldest (ms, by the familiar clock: redis.go's
-- redisFamiliarNow). No sources, or no set, is unfamiliar.
local function familiar(key, from, to, oldest)
  for j = from, to do
    local score = redis.call('ZSCORE', key, ARGV[j])
    if score and tonumber(score) >= oldest then
      return true
    end
  end
  return false
end

-- teach makes the sources ARGV[from..to] familiar to the user after a
-- success: each scored by t (ms, by the familiar clock); when one is new and the set holds more than
-- max, the oldest go (all but the max highest ranks: one command, whatever
-- the size); the set lives age ms after its latest. A source
-- older than age may stay until then, unread: familiar compares scores.
-- (Dropping those too was one more command on every new source.)
local function teach(key, from, to, t, age, max)
  if to < from then
    return
  end
  local zadd = {}
  for j = from, to do
    zadd[#zadd + 1], zadd[#zadd + 2] = t, ARGV[j]
  end
  if redis.call('ZADD', key, unpack(zadd)) > 0 then
    redis.call('ZREMRANGEBYRANK', key, 0, -max - 1)
  end
  redis.call('PEXPIRE', key, age)
end

