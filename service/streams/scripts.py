"""Every Lua script of the streams core; each touches the keys of one hash slot only.

Scripts run atomically, so dedup and append cannot be split by a crash or by a
second replica of the service (see ``keys.py`` for the slots).
"""

# Every answer from an existing key rewrites it unchanged (SET ... KEEPTTL): that
# write follows the first one in the replication stream and the AOF, so the
# WAIT/WAITAOF of a durability mode covers a duplicate answer too.

# A completion: answer from the (id, request_id) key if it is there, else append.
# The key holds "<entry id> <digest>"; a different digest is a conflict.
# KEYS: seen, done, stream.  ARGV: digest, ttl, maxlen, then the entry's field/value pairs.
COMPLETE_LUA = """
local seen = redis.call('GET', KEYS[1])
if seen then
  redis.call('SET', KEYS[1], seen, 'KEEPTTL')
  local sep = string.find(seen, ' ', 1, true)
  local first = string.sub(seen, 1, sep - 1)
  if string.sub(seen, sep + 1) == ARGV[1] then return {0, first} end
  return {2, first}
end
local entry = redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], '*', unpack(ARGV, 4))
redis.call('SET', KEYS[1], entry .. ' ' .. ARGV[1], 'EX', ARGV[2])
redis.call('SET', KEYS[2], entry, 'EX', ARGV[2], 'NX')
return {1, entry}
"""

# A progress update: dropped once the action completed, else once per step.
# KEYS: progress seen, done, stream.  ARGV: as COMPLETE_LUA.
PROGRESS_LUA = """
local done = redis.call('GET', KEYS[2])
if done then
  redis.call('SET', KEYS[2], done, 'KEEPTTL')
  return {3, done}
end
local seen = redis.call('GET', KEYS[1])
if seen then
  redis.call('SET', KEYS[1], seen, 'KEEPTTL')
  return {0, seen}
end
local entry = redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], '*', unpack(ARGV, 4))
redis.call('SET', KEYS[1], entry, 'EX', ARGV[2])
return {1, entry}
"""

# A webhook event: answer from the (event id, request_id) key if it is there,
# else append; the key holds "<entry id> <digest>", a different digest is a conflict.
# KEYS: seen, stream.  ARGV: digest, ttl, maxlen, then the entry's field/value pairs.
EVENT_LUA = """
local seen = redis.call('GET', KEYS[1])
if seen then
  redis.call('SET', KEYS[1], seen, 'KEEPTTL')
  local sep = string.find(seen, ' ', 1, true)
  local first = string.sub(seen, 1, sep - 1)
  if string.sub(seen, sep + 1) == ARGV[1] then return {0, first} end
  return {2, first}
end
local entry = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', unpack(ARGV, 4))
redis.call('SET', KEYS[1], entry .. ' ' .. ARGV[1], 'EX', ARGV[2])
return {1, entry}
"""

# A dead letter, once per body hash (KEYS[1] is its digest key), or once per
# (group, stream, entry id) for a consumer group's poison letter.
# KEYS: dead seen, dead stream.  ARGV: ttl, maxlen, then the letter's field/value pairs.
DEAD_LETTER_LUA = """
local seen = redis.call('GET', KEYS[1])
if seen then
  redis.call('SET', KEYS[1], seen, 'KEEPTTL')
  return {0, seen}
end
local entry = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', unpack(ARGV, 3))
redis.call('SET', KEYS[1], entry, 'EX', ARGV[1])
return {1, entry}
"""

# Replace a letter by one with a new reason, and point its dedup key at it.
# KEYS: dead seen, dead stream.  ARGV: old entry id, ttl, maxlen, field/value pairs.
REPLACE_LETTER_LUA = """
local entry = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', unpack(ARGV, 4))
redis.call('XDEL', KEYS[2], ARGV[1])
redis.call('SET', KEYS[1], entry, 'EX', ARGV[2])
return entry
"""
