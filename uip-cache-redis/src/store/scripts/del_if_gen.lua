local v = redis.call('GETRANGE', KEYS[1], 0, 7)
if v == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
