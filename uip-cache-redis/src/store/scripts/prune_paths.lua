local m = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
if #m > 0 then
  redis.call('ZREM', KEYS[1], unpack(m))
  redis.call('ZREM', KEYS[2], unpack(m))
end
return #m
