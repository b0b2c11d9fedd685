"""The Lua scripts of :mod:`postman_async.ratelimit_redis`. Times are Redis's ``TIME`` in µs;
numbers written back go through ``string.format('%d')`` so no precision is lost."""

from __future__ import annotations

# Every script's preamble: the margin that 429s taught, shared by every process (fields m,
# mat of the penalty hash), decayed as in postman_async.margin; the share of the rate in
# force after a 429; and ``now``, Redis's TIME in µs.
_COMMON = """
local function learned(pen, now, floor, hold, half_life)
  local m = tonumber(pen[3] or '') or floor
  local quiet = now - tonumber(pen[4] or '0') - hold
  if quiet <= 0 then return m end
  return floor + (m - floor) * math.pow(0.5, quiet / half_life)
end
local function fraction_at(pen, now, recovery)
  local fraction = tonumber(pen[1] or '1')
  if fraction < 1 then
    local progress = (now - tonumber(pen[2] or '0')) / recovery
    if progress >= 1 then fraction = 1 else fraction = fraction + (1 - fraction) * progress end
  end
  return fraction
end
local function int(x) return string.format('%d', x) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
"""

# pacing="margin". KEYS: tat, blocked, penalty. ARGV: base_interval_us, slack_us, bulk (0/1),
# recovery_us, ttl_ms, local margin, learn (0/1), ceiling, floor, hold_us, half_life_us.
# Returns {reserved (1/0), wait_us}.
MARGIN_ACQUIRE = (
    _COMMON
    + """
local base = tonumber(ARGV[1])
local slack = tonumber(ARGV[2])
local bulk = tonumber(ARGV[3])
local ttl = tonumber(ARGV[5])
local margin = tonumber(ARGV[6])
local pen = redis.call('HMGET', KEYS[3], 'fraction', 'at', 'm', 'mat')
if tonumber(ARGV[7]) == 1 then
  local shared = learned(pen, now, tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11]))
  margin = math.min(tonumber(ARGV[8]), math.max(margin, shared))
end
local fraction = fraction_at(pen, now, tonumber(ARGV[4]))
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local blocked = tonumber(redis.call('GET', KEYS[2]) or '0')
local slot = math.max(tat, blocked)
if slot < now - slack then slot = now end
local step = math.floor(base * (1 + margin) / fraction)
if bulk == 1 and slot > now + step then
  return {0, slot - now - step}
end
redis.call('SET', KEYS[1], int(slot + step), 'PX', ttl)
return {1, slot - now}
"""
)

# Both pacings. KEYS: blocked, penalty. ARGV: delay_us, min_fraction, recovery_us, ttl_ms,
# mode (0: pause only; 1: a 429), retry_after_us (-1: none), local margin, learn (0/1),
# ceiling, floor, hold_us, half_life_us, window_retry_after_us. A 429 that a wider margin can
# cure widens the shared margin (learn=1 only); otherwise it halves the shared rate.
# Returns 1 when it halved the rate.
PENALIZE = (
    _COMMON
    + """
local delay = tonumber(ARGV[1])
local ttl = tonumber(ARGV[4]) + math.floor(tonumber(ARGV[3]) / 1000)
local blocked = tonumber(redis.call('GET', KEYS[1]) or '0')
if now + delay > blocked then
  redis.call('SET', KEYS[1], int(now + delay), 'PX', tonumber(ARGV[4]) + math.floor(delay / 1000))
end
if tonumber(ARGV[5]) == 0 then return 0 end
local pen = redis.call('HMGET', KEYS[2], 'fraction', 'at', 'm', 'mat')
local ceiling = tonumber(ARGV[9])
local retry_after = tonumber(ARGV[6])
if tonumber(ARGV[8]) == 1 and retry_after <= tonumber(ARGV[13]) then
  local floor = tonumber(ARGV[10])
  local shared = learned(pen, now, floor, tonumber(ARGV[11]), tonumber(ARGV[12]))
  local current = math.min(ceiling, math.max(tonumber(ARGV[7]), shared))
  if current < ceiling then
    local widened = math.min(ceiling, current + math.max(0.25 * current, 0.01))
    redis.call('HSET', KEYS[2], 'm', widened, 'mat', int(now))
    redis.call('PEXPIRE', KEYS[2], ttl + math.floor(tonumber(ARGV[11]) / 1000) * 10)
    return 0
  end
end
local fraction = math.max(tonumber(ARGV[2]), fraction_at(pen, now, tonumber(ARGV[3])) / 2)
redis.call('HSET', KEYS[2], 'fraction', fraction, 'at', int(now))
redis.call('PEXPIRE', KEYS[2], ttl + math.floor(tonumber(ARGV[11]) / 1000) * 10)
return 1
"""
)

# pacing="answers": the campaign's answer clock (see postman_async.answer_clock) and the
# spacing of the in-process limiter, one script for the reports, the reservations and the
# BULK lane's promises, so an acquire is one round trip.
#
# KEYS: seq (the last grant id), order (zset of the counted grants, score = id), released
# (hash: id -> when the grant passed the server's limiter at the latest, in µs: >= 0 once
# answered or lost ("final"); negated while provisional: (its slot, or its write if later) +
# cap), tat (the spacing's schedule: the next free slot), last (the last slot given), blocked
# (a 429's pause), penalty (the 429 rate cut), promised (zset "id:owner" -> slot: BULK slots
# not confirmed yet, which a HIGH caller may take over).
#
# ARGV: rate, window_us, cap_us, recovery_us, ttl_ms, want (slots wanted), bulk (1: the new
# slots are promises to owner), slack_us, catch_up_us, waited_us (how long the oldest caller
# has waited), owner, n_confirm, the promised ids owner confirms, n_reports, then n_reports
# triples (kind, id, age_us): 'w' written age_us ago; 'f' passed the server's limiter age_us
# ago at the latest (answered, or lost); 'u' never written, no longer counted. An age is
# measured on the reporter's clock and applied on Redis's: the script's TIME comes after the
# report left, so a time derived from an age is never early, and no clock offset between
# processes enters.
#
# A new slot is the latest of: now; the 429 pause; the schedule (1 / rate apart; slots the
# answers held back stay put, so the next ones catch up, by at most catch_up_us, never closer
# than half an interval to the last slot: slots never go back, so giving a grant back never
# moves a later one's gate earlier); and the gate: the final time of the depth-th most recent
# counted grant + the window. When that grant is still provisional and its deadline does not
# already allow the slot, no slot is given: its answer is awaited. A HIGH caller first takes
# over promised BULK slots, earliest first; a promise confirmed too late (past half the cap)
# is given back.
#
# Returns {status, wait_us, now, n_confirmed, [id, slot]..., [id, slot, why]...} (times in µs
# on Redis's clock): the confirmed promises, then the new slots (promises when bulk). status
# 0 = all wanted slots given; 1 = waiting for an answer (wait_us: the earliest the next slot
# could be, from now). why: what set the slot: 0 now, 1 an answer, 2 an unanswered grant's
# deadline (a lost answer; the slot waited for it), 3 the spacing, 4 a 429's pause, 5 a BULK
# promise taken over.
ANSWERS = (
    _COMMON
    + """
local rate = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local cap = tonumber(ARGV[3])
local ttl = tonumber(ARGV[5])
local want = tonumber(ARGV[6])
local bulk = tonumber(ARGV[7]) == 1
local owner = ARGV[11]
local nconf = tonumber(ARGV[12])
local at_arg = 13 + nconf
local nrep = tonumber(ARGV[at_arg])

local function forget(id)
  redis.call('ZREM', KEYS[2], id)
  redis.call('HDEL', KEYS[3], id)
end

for i = 0, nrep - 1 do
  local kind = ARGV[at_arg + 1 + 3 * i]
  local id = ARGV[at_arg + 2 + 3 * i]
  local at = now - tonumber(ARGV[at_arg + 3 + 3 * i])
  local v = redis.call('HGET', KEYS[3], id)
  if v then
    v = tonumber(v)
    if kind == 'u' then
      forget(id)
      redis.call('ZREM', KEYS[8], id .. ':' .. owner)
    elseif kind == 'f' then
      redis.call('HSET', KEYS[3], id, int(at))
    elseif v < 0 and at + cap > -v then
      redis.call('HSET', KEYS[3], id, int(-(at + cap)))
    end
  end
end

local out = {0, 0, now, 0}
for i = 13, 12 + nconf do
  local id = ARGV[i]
  local slot = redis.call('ZSCORE', KEYS[8], id .. ':' .. owner)
  if slot then
    redis.call('ZREM', KEYS[8], id .. ':' .. owner)
    slot = tonumber(slot)
    if slot + cap / 2 < now then
      forget(id)  -- too late to write within the cap of its slot
    else
      out[4] = out[4] + 1
      out[#out + 1] = tonumber(id)
      out[#out + 1] = slot
    end
  end
end
if want <= 0 then return out end
local given = 0

if not bulk then
  -- A HIGH caller goes first: it takes over the promised BULK slots, earliest first.
  while given < want do
    local head = redis.call('ZRANGE', KEYS[8], 0, 0, 'WITHSCORES')
    if #head == 0 then break end
    redis.call('ZREM', KEYS[8], head[1])
    local id = string.match(head[1], '^(%d+):')
    local slot = tonumber(head[2])
    if slot + cap / 2 < now then
      forget(id)  -- its owner is gone: it holds its successors until its deadline
    else
      given = given + 1
      out[#out + 1] = tonumber(id)
      out[#out + 1] = slot
      out[#out + 1] = 5
    end
  end
end

local pen = redis.call('HMGET', KEYS[7], 'fraction', 'at')
local eff = rate * fraction_at(pen, now, tonumber(ARGV[4]))
local depth = math.max(1, math.floor(eff * window / 1000000 + 1e-9))
local win = math.max(window, math.ceil(depth * 1000000 / eff))
local interval = math.ceil(1000000 / eff)

-- Forget grants whose gate lies in the past (slots are never earlier than now).
for _ = 1, 64 do
  local head = redis.call('ZRANGE', KEYS[2], 0, 0)
  if #head == 0 then break end
  local v = math.abs(tonumber(redis.call('HGET', KEYS[3], head[1]) or '0'))
  if v + 2 * win > now then break end
  forget(head[1])
end

local blocked = tonumber(redis.call('GET', KEYS[6]) or '0')
local last = tonumber(redis.call('GET', KEYS[5]) or '0')
local sched = math.max(tonumber(redis.call('GET', KEYS[4]) or '0'), blocked)
local arrived = now - tonumber(ARGV[10])
if sched < arrived - tonumber(ARGV[8]) then
  sched = arrived  -- idle before the callers came: start afresh, without a burst
else
  sched = math.max(sched, now - tonumber(ARGV[9]))
end
local n = redis.call('ZCARD', KEYS[2])
local half = math.floor(interval / 2)
local reserved = false
while given < want do
  local slot, why = now, 0
  if sched > slot then slot, why = sched, 3 end
  if last + half > slot then slot, why = last + half, 3 end
  if blocked >= slot and blocked > now then slot, why = blocked, 4 end
  if n >= depth then
    local g = redis.call('ZRANGE', KEYS[2], -depth, -depth)[1]
    local v = tonumber(redis.call('HGET', KEYS[3], g) or '0')
    if v >= 0 then
      if v + win > slot then slot, why = v + win, 1 end
    elseif -v + win > slot then
      out[1] = 1
      out[2] = math.max(slot, -v - cap + win) - now
      break
    else
      why = 2
    end
  end
  local id = redis.call('INCR', KEYS[1])
  if id == 1 then
    -- A new (or lost) clock: ids start from now, above any id a report may still carry.
    id = now
    redis.call('SET', KEYS[1], int(id))
  end
  local sid = int(id)
  redis.call('ZADD', KEYS[2], sid, sid)
  redis.call('HSET', KEYS[3], sid, int(-(slot + cap)))
  if bulk then redis.call('ZADD', KEYS[8], int(slot), sid .. ':' .. owner) end
  sched = sched + interval
  last = slot
  n = n + 1
  given = given + 1
  reserved = true
  out[#out + 1] = id
  out[#out + 1] = slot
  out[#out + 1] = why
end
if reserved then
  redis.call('SET', KEYS[4], int(sched), 'PX', ttl)
  redis.call('SET', KEYS[5], int(last), 'PX', ttl)
end
for _, i in ipairs({1, 2, 3, 8}) do redis.call('PEXPIRE', KEYS[i], ttl) end
return out
"""
)
