"""The job journal's Lua scripts. Each runs atomically on Redis's own clock (``TIME``, ms).

Every key of a job shares one hash tag (``...:{job_id}:...``), so the scripts also run on one
Redis Cluster slot. ``KEYS[1]`` is the job's key prefix; per-chunk keys are derived from it
(``<prefix>:c:<n>:todo|res|intent|base``).

Lease value: ``epoch|until_ms|owner``. Intent value: ``epoch|at_ms|attempts|status`` (the
baseline fields empty when unknown).
"""

from __future__ import annotations

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

_LEASE_FIELDS = """
local function lease_of(raw)
  if not raw then return nil end
  local e, u, o = string.match(raw, '^(%d+)|(%d+)|(.*)$')
  return tonumber(e), tonumber(u), o
end
"""

#: ARGV: marker, then field, value, ... Creates the job's meta unless it exists. Returns 1
#: created, 0 it exists, -1 remnants of a job whose meta was lost (the counters survive).
#: The creation time and marker are kept twice (meta and counters), so that losing either
#: key still shows that the job existed.
CREATE = (
    _NOW
    + """
local p = KEYS[1]
if redis.call('HEXISTS', p .. ':meta', 'chunks') == 1 then return 0 end
if redis.call('HEXISTS', p .. ':count', 'created_ms') == 1 then return -1 end
redis.call('HSET', p .. ':meta', 'created_ms', now, 'marker', ARGV[1], unpack(ARGV, 2))
redis.call('HSET', p .. ':count', 'created_ms', now, 'marker', ARGV[1])
return 1
"""
)

#: KEYS: the job's prefix, its tombstone. ARGV: reason, by, created_ms ('' unknown), ttl_s,
#: the lost incarnation's marker. Writes the tombstone and marks the meta lost, unless the
#: meta is another incarnation's (the job was already submitted again): returns 0 then.
MARK_LOST = """
local meta = KEYS[1] .. ':meta'
local m = redis.call('HGET', meta, 'marker')
if m and m ~= ARGV[5] then return 0 end
redis.call('HSET', KEYS[2], 'reason', ARGV[1], 'by', ARGV[2])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[2], 'created_ms', ARGV[3]) end
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[4]))
if redis.call('HEXISTS', meta, 'chunks') == 1 then redis.call('HSET', meta, 'lost', ARGV[1]) end
return 1
"""

#: ARGV: expected position, new position, then (chunk, id, baseline, error_result) per item.
#: Returns {1, position}, {-1, position} (another producer moved on), {-2, position} (sealed).
SUBMIT = """
local p = KEYS[1]
local meta = p .. ':meta'
local pos = tonumber(redis.call('HGET', meta, 'position') or '0')
if pos ~= tonumber(ARGV[1]) then return {-1, pos} end
if redis.call('HGET', meta, 'sealed') == '1' then return {-2, pos} end
local distinct, dup, invalid = 0, 0, 0
local seq = pos
for i = 3, #ARGV, 4 do
  seq = seq + 1
  local c = p .. ':c:' .. ARGV[i]
  local id, base, err = ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  if redis.call('ZSCORE', c .. ':todo', id) or redis.call('HEXISTS', c .. ':res', id) == 1 then
    dup = dup + 1
  elseif err ~= '' then
    redis.call('HSET', c .. ':res', id, err)
    redis.call('HINCRBY', p .. ':cdist', ARGV[i], 1)
    invalid = invalid + 1
  else
    redis.call('ZADD', c .. ':todo', seq, id)
    if base ~= '' then redis.call('HSET', c .. ':base', id, base) end
    redis.call('HINCRBY', p .. ':cdist', ARGV[i], 1)
    distinct = distinct + 1
  end
end
local count = p .. ':count'
redis.call('HINCRBY', count, 'submitted', (#ARGV - 2) / 4)
redis.call('HINCRBY', count, 'distinct', distinct + invalid)
redis.call('HINCRBY', count, 'duplicates', dup)
if invalid > 0 then
  redis.call('HINCRBY', count, 'outcome:error', invalid)
  redis.call('HINCRBY', count, 'done', invalid)
end
redis.call('HSET', meta, 'position', ARGV[2])
return {1, tonumber(ARGV[2])}
"""

#: ARGV: chunk, owner, ttl_ms. Returns {1, epoch, now} (taken) or {0, epoch, ms_left} (held).
#: Epochs grow with Redis's clock (ms), not from 1: a job lost with Redis's data and submitted
#: again under its ID gets epochs its lost incarnation never had, so a stale worker of that
#: one, still holding "epoch 1" in memory, is fenced out of the new job's leases.
TAKE_LEASE = (
    _NOW
    + _LEASE_FIELDS
    + """
local p = KEYS[1]
local e, u = lease_of(redis.call('HGET', p .. ':leases', ARGV[1]))
if e and u > now then return {0, e, u - now} end
local epoch = redis.call('INCR', p .. ':epoch')
if epoch <= now then  -- from Redis's clock: a lost job's incarnation never reuses an epoch
  epoch = now + 1
  redis.call('SET', p .. ':epoch', epoch, 'KEEPTTL')
end
local value = epoch .. '|' .. (now + tonumber(ARGV[3])) .. '|' .. ARGV[2]
redis.call('HSET', p .. ':leases', ARGV[1], value)
return {1, epoch, now}
"""
)

#: ARGV: chunk, epoch, ttl_ms. Extends the lease only while the epoch is still ours.
HEARTBEAT = (
    _NOW
    + _LEASE_FIELDS
    + """
local p = KEYS[1]
local e, u, o = lease_of(redis.call('HGET', p .. ':leases', ARGV[1]))
if e ~= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', p .. ':leases', ARGV[1], e .. '|' .. (now + tonumber(ARGV[3])) .. '|' .. o)
return 1
"""
)

#: ARGV: chunk, epoch. Gives the lease up if it is still ours.
RELEASE_LEASE = (
    _LEASE_FIELDS
    + """
local p = KEYS[1]
local e = lease_of(redis.call('HGET', p .. ':leases', ARGV[1]))
if e ~= tonumber(ARGV[2]) then return 0 end
redis.call('HDEL', p .. ':leases', ARGV[1])
return 1
"""
)

#: ARGV: chunk, epoch, id, baseline ("attempts|status"). Writes the intent only while the
#: lease is ours and unexpired, the ID has no result and the job is not cancelled.
#: Returns the intent's Redis time (ms), or -1 fenced, -2 already done, -3 cancelled.
WRITE_INTENT = (
    _NOW
    + _LEASE_FIELDS
    + """
local p = KEYS[1]
local c = p .. ':c:' .. ARGV[1]
local e, u = lease_of(redis.call('HGET', p .. ':leases', ARGV[1]))
if e ~= tonumber(ARGV[2]) or u <= now then return -1 end
if redis.call('HEXISTS', c .. ':res', ARGV[3]) == 1 then return -2 end
if redis.call('HGET', p .. ':meta', 'cancelled') == '1' then return -3 end
redis.call('HSET', c .. ':intent', ARGV[3], ARGV[2] .. '|' .. now .. '|' .. ARGV[4])
return now
"""
)

#: ARGV: chunk, id, expected intent ('' = none), result JSON, outcome, calls spent.
#: Writes the ID's one result if it has none and its intent is still the expected one.
#: Returns 1 written, 0 already had a result, -1 the intent changed (another holder's).
WRITE_RESULT = """
local p = KEYS[1]
local c = p .. ':c:' .. ARGV[1]
if redis.call('HEXISTS', c .. ':res', ARGV[2]) == 1 then return 0 end
local cur = redis.call('HGET', c .. ':intent', ARGV[2]) or ''
if cur ~= ARGV[3] then return -1 end
redis.call('HSET', c .. ':res', ARGV[2], ARGV[4])
redis.call('HDEL', c .. ':intent', ARGV[2])
redis.call('HDEL', c .. ':base', ARGV[2])
redis.call('HDEL', c .. ':tries', ARGV[2])
redis.call('ZREM', c .. ':todo', ARGV[2])
local count = p .. ':count'
redis.call('HINCRBY', count, 'outcome:' .. ARGV[5], 1)
redis.call('HINCRBY', count, 'done', 1)
redis.call('HINCRBY', count, 'calls', tonumber(ARGV[6]))
return 1
"""

#: ARGV: chunk, epoch. Marks the chunk done when the input is sealed and nothing of it is
#: left (no pending ID, no unresolved intent); the job is finished when every chunk is.
#: Returns 1 done (2: and the job finished), 0 not yet, -1 fenced, -2 fewer results than
#: distinct IDs submitted to the chunk (Redis lost some of its keys).
FINISH_CHUNK = (
    _NOW
    + _LEASE_FIELDS
    + """
local p = KEYS[1]
local c = p .. ':c:' .. ARGV[1]
local e = lease_of(redis.call('HGET', p .. ':leases', ARGV[1]))
if e ~= tonumber(ARGV[2]) then return -1 end
local meta = p .. ':meta'
if redis.call('HGET', meta, 'sealed') ~= '1' then return 0 end
if redis.call('ZCARD', c .. ':todo') > 0 or redis.call('HLEN', c .. ':intent') > 0 then return 0 end
local expected = tonumber(redis.call('HGET', p .. ':cdist', ARGV[1]) or '0')
if redis.call('HLEN', c .. ':res') < expected then return -2 end
redis.call('SADD', p .. ':chunks_done', ARGV[1])
redis.call('HDEL', p .. ':leases', ARGV[1])
if redis.call('SCARD', p .. ':chunks_done') >= tonumber(redis.call('HGET', meta, 'chunks')) then
  if not redis.call('HGET', meta, 'finished_ms') then
    redis.call('HSET', meta, 'finished_ms', now)
  end
  return 2
end
return 1
"""
)

#: No ARGV. Returns the chunks (not done, lease absent or expired) that this caller should
#: kick, each claimed for twice the job's lease TTL so concurrent supervisors kick it once.
CLAIM_STALLED = (
    _NOW
    + _LEASE_FIELDS
    + """
local p = KEYS[1]
local meta = p .. ':meta'
if redis.call('HGET', meta, 'sealed') ~= '1' then return {} end
local chunks = tonumber(redis.call('HGET', meta, 'chunks'))
local debounce = math.floor(tonumber(redis.call('HGET', meta, 'lease_ttl')) * 2000)
local out = {}
for n = 0, chunks - 1 do
  local s = tostring(n)
  if redis.call('SISMEMBER', p .. ':chunks_done', s) == 0 then
    local e, u = lease_of(redis.call('HGET', p .. ':leases', s))
    if not e or u <= now then
      if redis.call('SET', p .. ':kick:' .. s, now, 'NX', 'PX', debounce) then
        table.insert(out, n)
      end
    end
  end
end
return out
"""
)

#: No ARGV. {now, leased (unexpired), [position]}: what progress needs besides the hashes.
LEASE_COUNT = (
    _NOW
    + _LEASE_FIELDS
    + """
local leases = redis.call('HVALS', KEYS[1] .. ':leases')
local held = 0
for _, raw in ipairs(leases) do
  local e, u = lease_of(raw)
  if e and u > now then held = held + 1 end
end
return {now, held}
"""
)
