local since = tonumber(ARGV[1])
local now = tonumber(redis.call('GET', KEYS[1]) or '0')
if now <= since then return {} end
if now - since > tonumber(ARGV[2]) then return false end
local items = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. since, '+inf')
if #items < now - since then return false end
return items
