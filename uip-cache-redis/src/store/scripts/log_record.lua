local n = redis.call('INCR', KEYS[1])
local sec = redis.call('TIME')[1]
local count = 1
local rate = redis.call('GET', KEYS[3])
if rate then
  local s, c = string.match(rate, '^(%d+) (%d+)$')
  if s == sec then count = tonumber(c) + 1 end
end
redis.call('SET', KEYS[3], sec .. ' ' .. count)
if count <= tonumber(ARGV[3]) then
  redis.call('ZADD', KEYS[2], n, n .. ' ' .. ARGV[1])
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -(tonumber(ARGV[2]) + 1))
end
return n
