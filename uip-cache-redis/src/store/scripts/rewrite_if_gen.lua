if redis.call('GETRANGE', KEYS[1], 0, 7) ~= ARGV[1] then return 0 end
local ttl = redis.call('PTTL', KEYS[1])
if ttl <= 0 then return 0 end
local want = tonumber(ARGV[3])
if want < ttl then ttl = want end
redis.call('SET', KEYS[1], ARGV[1] .. ARGV[2], 'PX', ttl)
return 1
