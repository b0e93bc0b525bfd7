-- Clear: Finish's fast path for successes, a script of its own so that it
-- sends Redis only what it needs, and one call for all the successes of
-- a batch (each call costs Redis more than a command).
--   KEYS   per success j, in turn: the token's settled marker, then the
--          failed, blocked and pending keys of each of its n_j counters
--   ARGV[1] how long a marker lives, in ms (the pending timeout)
--   ARGV[1+j] n_j, the number of counters of success j
-- For each success where no counter is blocked and none has a charge
-- pending (one EXISTS tells both), it deletes the failure counts (this
-- attempt's charge among them) and marks the token settled, once: 1 in
-- the reply. Otherwise (something to lift or settle, or the token
-- settled already) it changes nothing there: -1, and the caller runs
-- redis_finish.lua for that one.
local out, k = {}, 0
for j = 2, #ARGV do
  local n = tonumber(ARGV[j])
  local found
  if n == 2 then
    found = redis.call('EXISTS', KEYS[k + 3], KEYS[k + 4], KEYS[k + 6], KEYS[k + 7])
  elseif n == 1 then
    found = redis.call('EXISTS', KEYS[k + 3], KEYS[k + 4])
  else
    found = redis.call('EXISTS', KEYS[k + 3], KEYS[k + 4], KEYS[k + 6], KEYS[k + 7], KEYS[k + 9], KEYS[k + 10])
  end
  if found > 0 or not redis.call('SET', KEYS[k + 1], '1', 'NX', 'PX', ARGV[1]) then
    out[j - 1] = -1
  else
    if n == 2 then
      redis.call('DEL', KEYS[k + 2], KEYS[k + 5])
    else
      for i = 1, n do
        redis.call('DEL', KEYS[k + 3 * i - 1])
      end
    end
    out[j - 1] = 1
  end
  k = k + 1 + 3 * n
end
return out
