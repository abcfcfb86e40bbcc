local n = 0
for i = 1, #KEYS do
  if redis.call('GETRANGE', KEYS[i], 0, 7) == ARGV[i] then n = n + redis.call('DEL', KEYS[i]) end
end
return n
