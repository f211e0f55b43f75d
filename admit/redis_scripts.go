package admit

import "github.com/redis/go-redis/v9"

// The Redis backend's scripts: one per Backend operation, each run atomically by Redis
// on one class's hash. They implement the same bucket math as Memory (see bucket in
// backend.go); a change to one must be made to the other, and the conformance suite
// checks that they agree.
//
// Numbers: Lua numbers are doubles. Times are integral microseconds since the Unix
// epoch (below 2^53, so exact); levels are stored and returned as "%.17g" strings,
// which round-trip a double exactly (Redis would truncate a returned number to an
// integer). Costs and limits are integers well below 2^53.
//
// The hash (KEYS[1]) holds:
//
//	burst, headroom          the class's Spec
//	lim_D, cap_D, lvl_D, last_D  bucket D (r, i, o): limit, capacity, level, last refill (µs)
//	lost_D                   "1" while bucket D, recreated empty after Redis lost the class,
//	                         has not had a Sync of D yet (absent otherwise)
//	paused, synced           pause end and the now of the last applied Sync (µs; absent: zero)
//	held:ID, seen:ID         output held by instance ID's calls in flight, and when ID last
//	                         reserved or settled (µs)
//	infl_r:ID, infl_i:ID     requests and input tokens reserved by ID's calls in flight
//
// A field of ID is absent when zero; held:ID, infl_r:ID and infl_i:ID are what ID took
// from this hash, so a Settle never releases (or refunds) more than they hold: what it
// reserved beyond them was taken from a hash Redis lost (see create and redisSettle).
// Memory has no such case: on a hash that was not lost, and for every reservation a
// Limiter makes, the math is Memory's.
//
// Every script takes the same leading arguments:
//
//	ARGV[1]    now in µs, or "" for Redis TIME
//	ARGV[2]    µs subtracted from Redis TIME (a Sync's report is that old)
//	ARGV[3]    this instance's ID
//	ARGV[4]    held lease in µs: another instance's held output counts for this long after
//	           it was last seen, so that a crashed process does not hold output forever
//	ARGV[5]    key TTL in ms, renewed by every write
//	ARGV[6..10] rpm, itpm, otpm, burst, headroom: the spec that recreates a missing class
//	           (after a Redis restart, a flush or the TTL), or "" when this instance does
//	           not know it
//	ARGV[11..] the operation's own
//
// and returns an array whose first element is "ok", "wait", "unknown" or "exists", and
// whose last is "recreated" when the script found the class missing and recreated it
// empty (the caller strips it and logs).
const redisPrelude = `
local key = KEYS[1]
local D = {'r', 'i', 'o'}
local me = ARGV[3]
local lease = tonumber(ARGV[4])

local now
if ARGV[1] ~= '' then
  now = tonumber(ARGV[1])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2]) - tonumber(ARGV[2])
end

local function f(x) return string.format('%.17g', x) end

-- create makes the class's hash from the spec in ARGV, with full buckets when full,
-- else empty (level 0, refilling from now) and marked lost: a class that an instance
-- initialised and Redis no longer has was lost (a restart without persistence, a
-- flush, the TTL), and the API's buckets may be as drained as the lost ones were, by
-- this namespace's calls of the last minute, so only an empty bucket cannot overshoot.
-- It returns false when this instance does not know the spec.
local recreated = false
local function create(full)
  if ARGV[6] == '' then return false end
  local burst = tonumber(ARGV[9])
  local fields = {'burst', ARGV[9], 'headroom', ARGV[10]}
  for n, d in ipairs(D) do
    local lim = tonumber(ARGV[5 + n])
    local cap = lim * burst
    local lvl = 0
    if full then lvl = cap end
    for _, v in ipairs({'lim_' .. d, f(lim), 'cap_' .. d, f(cap), 'lvl_' .. d, f(lvl), 'last_' .. d, f(now)}) do
      fields[#fields + 1] = v
    end
    if not full then
      fields[#fields + 1] = 'lost_' .. d
      fields[#fields + 1] = '1'
    end
  end
  redis.call('HSET', key, unpack(fields))
  redis.call('PEXPIRE', key, ARGV[5])
  if not full then recreated = true end
  return true
end

-- reply returns t, marked when this script recreated the class.
local function reply(t)
  if recreated then t[#t + 1] = 'recreated' end
  return t
end

-- Per-instance fields: held (output), in-flight requests and input, last seen.
local instFields = {o = 'held:', r = 'infl_r:', i = 'infl_i:', seen = 'seen:'}
local instNames = {['held:'] = 'o', ['infl_r:'] = 'r', ['infl_i:'] = 'i', ['seen:'] = 'seen'}

local function load()
  local raw = redis.call('HGETALL', key)
  if #raw == 0 then
    if not create(false) then return nil end
    raw = redis.call('HGETALL', key)
  end
  local h = {}
  for i = 1, #raw, 2 do h[raw[i]] = raw[i + 1] end
  local s = {headroom = tonumber(h.headroom), burst = tonumber(h.burst),
    paused = tonumber(h.paused or '0'), synced = tonumber(h.synced or '0'), b = {}, inst = {}}
  for _, d in ipairs(D) do
    s.b[d] = {lim = tonumber(h['lim_' .. d]), cap = tonumber(h['cap_' .. d]),
      lvl = tonumber(h['lvl_' .. d]), last = tonumber(h['last_' .. d]), lost = h['lost_' .. d] == '1'}
    s.b[d].wasLost = s.b[d].lost
  end
  for k, v in pairs(h) do
    local field, id = string.match(k, '^([a-z_]+:)(.+)$')
    local name = field and instNames[field]
    if name then
      local m = s.inst[id]
      if not m then
        m = {o = 0, r = 0, i = 0, seen = 0}
        s.inst[id] = m
      end
      m[name] = tonumber(v)
    end
  end
  return s
end

-- mine returns this instance's fields, creating them.
local function mine(s)
  local m = s.inst[me]
  if not m then
    m = {o = 0, r = 0, i = 0, seen = 0}
    s.inst[me] = m
  end
  return m
end

local function live(s, id) return id == me or now - s.inst[id].seen <= lease end

-- heldTotal is the output held by the calls in flight of every live instance.
local function heldTotal(s)
  local t = 0
  for id, m in pairs(s.inst) do
    if live(s, id) then t = t + m.o end
  end
  return t
end

local function top(s, d, held)
  if d == 'o' then return s.b[d].cap - held end
  return s.b[d].cap
end

-- refill adds what flowed in since last, up to top; an earlier now adds nothing.
local function refill(b, t, tp)
  if t > b.last then
    if b.lvl < tp then
      b.lvl = math.min(tp, b.lvl + ((t - b.last) / 1000000) * (b.lim / 60))
    end
    b.last = t
  end
end

local function save(s)
  local fields = {}
  local gone = {}
  for _, d in ipairs(D) do
    local b = s.b[d]
    for _, v in ipairs({'lim_' .. d, f(b.lim), 'cap_' .. d, f(b.cap), 'lvl_' .. d, f(b.lvl), 'last_' .. d, f(b.last)}) do
      fields[#fields + 1] = v
    end
    if b.lost then
      fields[#fields + 1] = 'lost_' .. d
      fields[#fields + 1] = '1'
    elseif b.wasLost then
      gone[#gone + 1] = 'lost_' .. d
    end
  end
  fields[#fields + 1] = 'paused'
  fields[#fields + 1] = f(s.paused)
  fields[#fields + 1] = 'synced'
  fields[#fields + 1] = f(s.synced)
  local m = s.inst[me]
  if m then
    local any = false
    for _, name in ipairs({'o', 'r', 'i'}) do
      if m[name] > 0 then
        any = true
        fields[#fields + 1] = instFields[name] .. me
        fields[#fields + 1] = f(m[name])
      else
        gone[#gone + 1] = instFields[name] .. me
      end
    end
    if any then
      fields[#fields + 1] = 'seen:' .. me
      fields[#fields + 1] = f(m.seen)
    else
      gone[#gone + 1] = 'seen:' .. me
    end
  end
  if #gone > 0 then redis.call('HDEL', key, unpack(gone)) end
  redis.call('HSET', key, unpack(fields))
  redis.call('PEXPIRE', key, ARGV[5])
end
`

// redisInit creates the class if it does not exist: ARGV[11] is "full" when this
// instance never initialised it (see Redis.Init), else "empty".
var redisInit = redis.NewScript(redisPrelude + `
if redis.call('EXISTS', key) == 1 then return {'exists'} end
create(ARGV[11] == 'full')
return reply({'ok'})
`)

// redisReserve: ARGV[11..13] the cost. Returns {"ok"}, or {"wait", pause µs, bucket
// seconds} (the caller rounds the seconds up as Memory does).
var redisReserve = redis.NewScript(redisPrelude + `
local s = load()
if not s then return {'unknown'} end
local need = {tonumber(ARGV[11]), tonumber(ARGV[12]), tonumber(ARGV[13])}
for id, _ in pairs(s.inst) do
  if not live(s, id) then
    s.inst[id] = nil
    redis.call('HDEL', key, 'held:' .. id, 'infl_r:' .. id, 'infl_i:' .. id, 'seen:' .. id)
  end
end
local held = heldTotal(s)
local pause = 0
if now < s.paused then pause = s.paused - now end
local secs = 0
for n, d in ipairs(D) do
  local b = s.b[d]
  refill(b, now, top(s, d, held))
  local target = math.min(need[n] + s.headroom * b.cap, b.cap)
  if b.lvl < target then
    secs = math.max(secs, (target - b.lvl) / (b.lim / 60))
  end
end
if pause > 0 or secs > 0 then
  save(s)
  return reply({'wait', f(pause), f(secs)})
end
local m = mine(s)
for n, d in ipairs(D) do
  s.b[d].lvl = s.b[d].lvl - need[n]
  m[d] = m[d] + need[n]
end
if need[1] > 0 or need[2] > 0 or need[3] > 0 then m.seen = now end
save(s)
return reply({'ok'})
`)

// redisSettle: ARGV[11..13] the reserved cost, ARGV[14..16] the actual; then as
// many more settles, six arguments each, applied in turn (Redis.Settle sends the
// settles of one class that queued behind its previous round trip in one).
//
// Each bucket is charged actual − reserved, as Memory does, when this instance's
// fields hold the reservation. What they do not hold was reserved in a hash Redis lost,
// and this one, recreated empty, never took it: no refund is made for it, and the
// output, which the API counts as it is generated, partly after the loss, is charged
// in full.
var redisSettle = redis.NewScript(redisPrelude + `
local s = load()
if not s then return {'unknown'} end
local held = heldTotal(s)
local m = mine(s)
for j = 10, #ARGV - 6, 6 do
  for n, d in ipairs(D) do
    local b = s.b[d]
    local res, act = tonumber(ARGV[j + n]), tonumber(ARGV[j + 3 + n])
    refill(b, now, top(s, d, held))
    local released = math.max(0, math.min(m[d], res))
    m[d] = m[d] - released
    local charge
    if d == 'o' then
      held = held - released
      charge = act - released
    else
      charge = math.max(act - res, -released)
    end
    b.lvl = math.min(b.lvl - charge, top(s, d, held))
  end
end
m.seen = now
save(s)
return reply({'ok'})
`)

// redisSync: per bucket (ARGV[11..14], [15..18], [19..22]) valid ("1" or "0"), limit,
// remaining, slack.
var redisSync = redis.NewScript(redisPrelude + `
local s = load()
if not s then return {'unknown'} end
local held = heldTotal(s)
local fresh = now >= s.synced
for n, d in ipairs(D) do
  local a = 11 + (n - 1) * 4
  if ARGV[a] == '1' then
    local b = s.b[d]
    local limit, remaining, slack = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
    refill(b, now, top(s, d, held))
    if limit > 0 and limit ~= b.lim then
      local c = limit * s.burst
      if b.lost then
        -- Recreated empty from a spec (the start tier in auto mode) whose limit this
        -- is the first to correct: its level is what refilled since, not capacity
        -- less reservations, so it does not move with the capacity.
        b.lvl = math.min(b.lvl, c)
      else
        b.lvl = b.lvl + (c - b.cap)
      end
      b.lim, b.cap = limit, c
    end
    b.lost = false
    if fresh then b.lvl = math.min(b.lvl, remaining + slack) end
  end
end
if fresh then s.synced = now end
save(s)
return reply({'ok'})
`)

// redisPause: ARGV[11] the pause's end in µs, or, with Redis TIME, its distance from
// now in µs.
var redisPause = redis.NewScript(redisPrelude + `
if redis.call('EXISTS', key) == 0 and not create(false) then return {'unknown'} end
local untl = tonumber(ARGV[11])
if ARGV[1] == '' then untl = now + untl end
local paused = tonumber(redis.call('HGET', key, 'paused') or '0')
if untl > paused then
  redis.call('HSET', key, 'paused', f(untl))
  redis.call('PEXPIRE', key, ARGV[5])
end
return reply({'ok'})
`)

// redisState returns {"ok", now, then limit, capacity, level per bucket, the output
// held, paused, synced}, computing the levels at now without writing them.
var redisState = redis.NewScript(redisPrelude + `
local s = load()
if not s then return {'unknown'} end
local held = heldTotal(s)
local out = {'ok', f(now)}
for _, d in ipairs(D) do
  local b = s.b[d]
  refill(b, now, top(s, d, held))
  out[#out + 1] = f(b.lim)
  out[#out + 1] = f(b.cap)
  out[#out + 1] = f(b.lvl)
end
out[#out + 1] = f(held)
out[#out + 1] = f(s.paused)
out[#out + 1] = f(s.synced)
return reply(out)
`)
