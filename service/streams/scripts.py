"""Every Lua script of the streams core; each touches the keys of one hash slot only.

Scripts run atomically, so dedup and append cannot be split by a crash or by a
second replica of the service (see ``keys.py`` for the slots).

Every entry is appended by ``append()`` of ``APPEND_PRELUDE``, whatever the
stream: the length cap (``FANOUT_STREAM_MAXLEN``) removes only entries every
consumer group has acknowledged (with no group, the oldest entries: history).
When the entries some group still needs fill the cap, nothing is removed and
nothing appended: the script answers ``Reply.FULL`` and the sender gets a 503
to retry later. Overload becomes back-pressure, never loss.

The scripts that file or append answer ``{code, entry id}``; ``Reply`` names the
codes, and callers read them by name.
"""

from enum import IntEnum

from .records import SWEEP


class Reply(IntEnum):
    """The first element of a publish, dead-letter or append script's answer."""

    #: Seen before, with the same content: the entry id is the first one's.
    DUPLICATE = 0
    #: Appended now: the entry id is the new entry's.
    ACCEPTED = 1
    #: Seen before (same id and request id) with other content: the first entry's id.
    CONFLICT = 2
    #: A progress update of an action whose completion is published: that entry's id.
    STALE = 3
    #: Nothing written: the entries some consumer group still needs fill the cap.
    FULL = 4


# Append one entry (field/value pairs) and keep the stream at most maxlen long,
# removing only entries no group still needs, a few (1 %) at a time. The removal
# is XADD's own MINID, so the receiver's Redis user needs no XTRIM or XDEL.
# cutoff (ms since the epoch, 0: not this time) is FANOUT_RETENTION: entries
# older than it that no group still needs go too, whole stream nodes at a time
# (MINID ~ with LIMIT: bounded work per call; the publisher asks about once a
# second per stream).
# Returns the new entry id, or false when the needed entries fill the cap.
# Only ``append`` is made on every call: the helpers of the trimming paths are
# made when a call takes one. Every function a script defines is a closure made
# on every call: the publish scripts with five fewer of them (these four, and the
# bucket helpers a script does not use) took 135.0k -> 129.5k instructions of
# server time per call (``python -m bench.script_cost``, Valkey 9.1.2).
APPEND_PRELUDE = """
local function append(stream, maxlen, cutoff, ...)
  local length = redis.call('XLEN', stream)
  if length < maxlen and (cutoff == 0 or length == 0) then
    return redis.call('XADD', stream, '*', ...)
  end

  -- Entry ids are "<ms>-<seq>"; compared as numbers, part by part.
  local function id_parts(id)
    local ms, seq = string.match(id, '^(%d+)-(%d+)$')
    return tonumber(ms), tonumber(seq)
  end
  local function id_less(a, b)
    local am, as = id_parts(a)
    local bm, bs = id_parts(b)
    return am < bm or (am == bm and as < bs)
  end
  local function successor(id)
    local ms, seq = id_parts(id)
    return string.format('%d-%d', ms, seq + 1)
  end
  -- The oldest entry id some group still needs: its oldest pending entry, or the
  -- one after its last delivered entry. Entries before it every group has
  -- acknowledged. nil when the stream has no group.
  local function needed_from()
    local floor = nil
    for _, group in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
      local info = {}
      for i = 1, #group, 2 do info[group[i]] = group[i + 1] end
      local need = successor(info['last-delivered-id'])
      if tonumber(info['pending']) > 0 then
        need = redis.call('XPENDING', stream, info['name'])[2]
      end
      if floor == nil or id_less(need, floor) then floor = need end
    end
    return floor
  end

  if length < maxlen then
    local keep = string.format('%d-0', cutoff)
    local floor = needed_from()
    if floor and id_less(floor, keep) then keep = floor end
    return redis.call('XADD', stream, 'MINID', '~', keep, 'LIMIT', 1000, '*', ...)
  end
  local slack = math.min(100, math.floor(maxlen / 100))
  local floor = needed_from()
  local upto = floor and ('(' .. floor) or '+'
  local old = redis.call('XRANGE', stream, '-', upto, 'COUNT', length - maxlen + 1 + slack)
  if length - #old >= maxlen then return false end
  return redis.call('XADD', stream, 'MINID', successor(old[#old][1]), '*', ...)
end
"""

# Every answer from an existing key rewrites it unchanged (SET ... KEEPTTL): that
# write follows the first one in the replication stream and the AOF, so the
# WAIT/WAITAOF of a durability mode covers a duplicate answer too. ``recall``
# is that read, for the keys an older version kept (with a TTL). A legacy key
# named as the stream itself (KEYS[1]) means no upgrade window is open (the
# publisher found no such key left): nothing is read.
RECALL_PRELUDE = """
local function recall(key)
  if key == KEYS[1] then return false end
  local value = redis.call('GET', key)
  if value then redis.call('SET', key, value, 'KEEPTTL') end
  return value
end
"""

# Dedup records (``records.py``) are fields of bucket hashes with no key TTL:
# KEYS[first..#KEYS] are the buckets of the window, newest first.
# ``recall_record`` answers from a record and rewrites it unchanged (HSET), as
# ``recall`` does for a key, so a duplicate answer is covered by WAIT/WAITAOF too.
RECALL_RECORD = """
local function recall_record(first, field)
  for i = first, #KEYS do
    local value = redis.call('HGET', KEYS[i], field)
    if value then
      redis.call('HSET', KEYS[i], field, value)
      return value
    end
  end
  return nil
end
"""

# A record and its action's done marker, one HMGET per bucket, newest first:
# each value (false when absent) and the index of the bucket that holds it.
RECALL_PAIR = """
local function recall_pair(first, field, done)
  local value, at, marker, marker_at = false, nil, false, nil
  for i = first, #KEYS do
    local got = redis.call('HMGET', KEYS[i], field, done)
    if got[1] and not value then value, at = got[1], i end
    if got[2] and not marker then marker, marker_at = got[2], i end
    if value and marker then break end
  end
  return value, at, marker, marker_at
end
"""

# Into the newest bucket (field/value pairs). The publish scripts leave the
# buckets that fell out of the window to the publisher, which deletes them after
# its first write into a new bucket (``records.Records.sweep``):
# one EXISTS less on every call, 129.5k -> 124.4k instructions of server time per
# call (``python -m bench.script_cost``).
REMEMBER = """
local function remember(first, ...)
  redis.call('HSET', KEYS[first], ...)
end
"""

# As ``remember``, for the dead letters' rare writes: the write that opens a
# bucket deletes the buckets that fell out of the window (UNLINK frees them in
# the background).
REMEMBER_SWEEPING = """
local function remember(first, ...)
  local newest = KEYS[first]
  if redis.call('EXISTS', newest) == 0 then
    local base, number = string.match(newest, '^(.*:)(%d+)$')
    local stale = tonumber(number) - (#KEYS - first + 1)
    for bucket = stale, stale - SWEEP + 1, -1 do
      redis.call('UNLINK', base .. bucket)
    end
  end
  redis.call('HSET', newest, ...)
end
""".replace("SWEEP", str(SWEEP))

# Completions and webhook events keep "<entry id> <digest>": the same digest
# answers {0, first entry}, another {2, first entry} (a conflict). An older
# version's record holds a longer digest, of which ours is the start.
SEEN_PRELUDE = """
local function seen_answer(seen, digest)
  local sep = string.find(seen, ' ', 1, true)
  local first = string.sub(seen, 1, sep - 1)
  if string.sub(seen, sep + 1, sep + #digest) == digest then return {0, first} end
  return {2, first}
end
"""

# A completion: answer from its record if there is one, else append, and mark the
# action done (once: the first completion).
# KEYS: stream, legacy seen, legacy done, buckets.
# ARGV: digest, maxlen, retention cutoff, seen field, done field, then the entry's pairs.
COMPLETE_LUA = (
    APPEND_PRELUDE
    + RECALL_PRELUDE
    + RECALL_PAIR
    + REMEMBER
    + SEEN_PRELUDE
    + """
local seen, at, done = recall_pair(4, ARGV[4], ARGV[5])
if seen then redis.call('HSET', KEYS[at], ARGV[4], seen) end
seen = seen or recall(KEYS[2])
if seen then return seen_answer(seen, ARGV[1]) end
local entry = append(KEYS[1], tonumber(ARGV[2]), tonumber(ARGV[3]), unpack(ARGV, 6))
if not entry then return {4, ''} end
if done or (KEYS[3] ~= KEYS[1] and redis.call('EXISTS', KEYS[3]) == 1) then
  remember(4, ARGV[4], entry .. ' ' .. ARGV[1])
else
  remember(4, ARGV[4], entry .. ' ' .. ARGV[1], ARGV[5], entry)
end
return {1, entry}
"""
)

# A progress update: dropped once the action completed, else once per step.
# KEYS: stream, legacy progress seen, legacy done, buckets.
# ARGV: digest (unused), maxlen, retention cutoff, step field, done field, then the pairs.
PROGRESS_LUA = (
    APPEND_PRELUDE
    + RECALL_PRELUDE
    + RECALL_PAIR
    + REMEMBER
    + """
local seen, at, done, done_at = recall_pair(4, ARGV[4], ARGV[5])
if done then
  redis.call('HSET', KEYS[done_at], ARGV[5], done)
  return {3, done}
end
done = recall(KEYS[3])
if done then return {3, done} end
if seen then
  redis.call('HSET', KEYS[at], ARGV[4], seen)
  return {0, seen}
end
seen = recall(KEYS[2])
if seen then return {0, seen} end
local entry = append(KEYS[1], tonumber(ARGV[2]), tonumber(ARGV[3]), unpack(ARGV, 6))
if not entry then return {4, ''} end
remember(4, ARGV[4], entry)
return {1, entry}
"""
)

# A webhook event, once per (event id, request_id); as a completion, without done.
# KEYS: stream, legacy seen, buckets.  ARGV: digest, maxlen, cutoff, field, then the pairs.
EVENT_LUA = (
    APPEND_PRELUDE
    + RECALL_PRELUDE
    + RECALL_RECORD
    + REMEMBER
    + SEEN_PRELUDE
    + """
local seen = recall_record(3, ARGV[4]) or recall(KEYS[2])
if seen then return seen_answer(seen, ARGV[1]) end
local entry = append(KEYS[1], tonumber(ARGV[2]), tonumber(ARGV[3]), unpack(ARGV, 5))
if not entry then return {4, ''} end
remember(3, ARGV[4], entry .. ' ' .. ARGV[1])
return {1, entry}
"""
)

# A dead letter, once per body hash, or once per (group, stream, entry id) for a
# consumer group's poison letter.
# KEYS: dead stream, legacy seen, buckets.  ARGV: maxlen, cutoff, field, the letter's pairs.
DEAD_LETTER_LUA = (
    APPEND_PRELUDE
    + RECALL_PRELUDE
    + RECALL_RECORD
    + REMEMBER_SWEEPING
    + """
local seen = recall_record(3, ARGV[3]) or recall(KEYS[2])
if seen then return {0, seen} end
local entry = append(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), unpack(ARGV, 4))
if not entry then return {4, ''} end
remember(3, ARGV[3], entry)
return {1, entry}
"""
)

# Replace a letter by one with a new reason, and point its record at it. The
# new one goes in first (one over the cap, as the old one goes next): a full
# stream leaves the old letter where it was.
# KEYS: dead stream, legacy seen, buckets.  ARGV: old entry id, maxlen, field, pairs.
REPLACE_LETTER_LUA = (
    APPEND_PRELUDE
    + REMEMBER_SWEEPING
    + """
local entry = append(KEYS[1], tonumber(ARGV[2]) + 1, 0, unpack(ARGV, 4))
if not entry then return {4, ''} end
redis.call('XDEL', KEYS[1], ARGV[1])
remember(3, ARGV[3], entry)
return {1, entry}
"""
)

# Append an entry as it is (a poison letter's event sent round again).
# KEYS: stream.  ARGV: maxlen, then the entry's field/value pairs.
APPEND_LUA = (
    APPEND_PRELUDE
    + """
local entry = append(KEYS[1], tonumber(ARGV[1]), 0, unpack(ARGV, 2))
if not entry then return {4, ''} end
return {1, entry}
"""
)

# Keep a consumer's claim on the entries its handlers still run: reset their idle
# time (XCLAIM with min-idle 0 and JUSTID, which leaves the delivery count as it
# is), so XAUTOCLAIM elsewhere does not hand them to a second run. Only entries
# this consumer still owns: one another consumer took meanwhile stays with it.
# KEYS: stream.  ARGV: group, consumer, entry ids.  Returns the ids it no longer owns.
KEEP_CLAIMS_LUA = """
local lost = {}
for i = 3, #ARGV do
  local row = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)[1]
  if row and row[2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
  else
    table.insert(lost, ARGV[i])
  end
end
return lost
"""

# Readiness: a script that writes nothing but is, to the server, a write script
# (a shebang without the no-writes flag): refused with READONLY on a replica,
# NOREPLICAS, MISCONF (disk errors) or OOM, exactly when deliveries would be.
# KEYS: any key of the prefix (routes it to its slot's master on a cluster).
WRITABLE_LUA = """#!lua
return 1
"""
