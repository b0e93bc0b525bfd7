-- Release: take back the charge Begin made on one counter for an attempt
-- another counter refused (RedisClusterStore, whose counters run apart).
--   KEYS[1] failed, KEYS[2] pending of the counter
--   ARGV[1] the token; ARGV[2] "1" when Begin counted the attempt as a
--           failure at once, "0" when it charged it as pending
if ARGV[2] == '1' then
  local f = tonumber(redis.call('GET', KEYS[1]) or '0')
  if f > 1 then
    redis.call('DECR', KEYS[1])
  elseif f == 1 then
    redis.call('DEL', KEYS[1])
  end
  return 1
end
return redis.call('ZREM', KEYS[2], ARGV[1])
