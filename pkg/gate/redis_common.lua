-- redis_common.lua: the per-counter rules shared by every script of
-- RedisStore and RedisClusterStore. Go puts this file in front of each
-- script body (redis_<op>.lua), so every Store method stays one EVALSHA
-- while no rule is written twice. RedisStore runs a script over all the
-- counters of an op (one slot: a single Redis, or a hash-tagged prefix);
-- RedisClusterStore runs it once per counter, in parallel, each on the
-- slot of its subject, and keeps the blocked index itself.
--
-- Counter scripts (check, begin, reserve, finish, record) take
--   KEYS   four keys per counter i (1-based), from KEYS[4*(i-1)+1]:
--          failed, blocked, pending, lockouts;
--          then, for begin, reserve, finish and record, the token's
--          settled marker (KEYS[4*n+1]);
--          then, optionally, the blocked index of each counter's kind
--          (KEYS[4*n+m+i], m 1 with the marker, else 0); without them the
--          index is not maintained here
--   ARGV[1] attempt cool-off in ms (0: failures never forgotten)
--   ARGV[2] pending timeout in ms (0: charges never expire)
--   ARGV[3] lockout memory in ms (0: no memory, every lockout is the first)
--   ARGV[4] token of the attempt ("" when none)
--   ARGV[5] "1" when the attempt succeeded, else "0"; "r1" and "r0" for
--          the Finish round of a Record over several counters
--          (RedisClusterStore), whose marker keeps its transitions as long
--          as Record's does (see marker_ttl)
--   ARGV[6] n, the number of counters
--   ARGV[7+3*(i-1)], ARGV[8+3*(i-1)], ARGV[9+3*(i-1)]  subject, limit and
--          flag of counter i: "1" when a success leaves the counter as it
--          is (Counter.KeepOnSuccess), "0" when it clears it, "m:<member>"
--          for a counter of distinct members (Counter.Member) and
--          "r:<member>" for one that only reports (Counter.ReportOnly)
--          "f" or "u" for a counter that applies only when the attempt's
--          source is familiar to its user, or only when it is not
--          (smart lockout, Counter.When)
--   ARGV[7+3*n] F, the number of familiar arguments that follow (0: none;
--          then the last key is the user's set of familiar sources):
--          ARGV[8+3*n] how long a source stays familiar in ms,
--          ARGV[9+3*n] how many a user keeps, ARGV[10+3*n] "1" when a
--          success teaches the sources, ARGV[11+3*n] the familiar clock's
--          time in ms (redis.go's redisFamiliarNow: the gate's, not TIME),
--          then the sources (F - 4 of them)
--   ARGV[8+3*n+F] ...  lockout cool-offs in ms, first lockout first (0: permanent)
-- and reply one flat array of integers:
--   admitted (0/1), last chance (0/1), n,
--   then per counter, 6 values: failures (-1 for a counter whose
--        condition does not hold: it was not read nor written), block (0 none, 1 expiring,
--        2 permanent), block ttl in ms, charge (Begin: 0 none, 1
--        saturated, 2 counted as a failure at once, 3 charged as pending;
--        0 in the other scripts' replies), lockouts so far (-1 when the
--        call did not read them) and charges pending after the call (both
--        Begin only; 0 in the other scripts' replies),
--   then per transition, 7 values: counter index (1-based), blocked (0/1),
--        duration in ms, permanent (0/1), failures, lockouts, and the
--        server's time in ms when it was made (which, with the token, names
--        its event: see remember);
-- or, from a fast path, the short form: admitted, 0, n, then per counter
-- its failures (none blocked, none pending, no transition; Begin: the
-- attempt counted at once on every counter, lockouts not read).
--
-- The admin scripts (block, unblock) act on one subject and apply no
-- policy: they take KEYS as a counter script of one counter (the four
-- keys, then optionally the blocked index), ARGV[1] the subject and, for
-- block, ARGV[2] the block's duration in ms (0: permanent); they reply
-- as a counter script.
--
-- Keys (see redis.go): failed is a plain integer with a sliding TTL, or,
-- for a counter of distinct members (spraying: the usernames that failed
-- from one source), a set of them with a sliding TTL, whose size is the
-- count; blocked
-- is the string "blocked" with the cool-off as TTL; pending is a sorted set
-- of tokens scored by their deadline in ms; lockouts is an integer with the
-- lockout memory as TTL; the index is a sorted set of blocked subjects
-- scored by the block's end in ms (+inf when permanent), read by Blocked;
-- the settled marker of a token exists once its outcome was reported
-- (Finish), or once its call made a transition (Finish, Record: then it
-- holds them, see remember).
--
-- An attempt is charged in one of two ways (see redis_begin.lua): counted
-- as a failure at once (failed + 1: an ordinary attempt, whose failure
-- then needs no second call) or, when its failure would block, as a
-- pending token (the last chance, whose block waits for its outcome).
-- Subjects only ever appear as key names and set members, never in a
-- pattern.
--
-- Every read of a counter's failure count and block goes through c.failed_n
-- and c.block_ttl, which remember what the script read or wrote, so that no
-- key is read twice in one call (a redis.call costs about as much as the
-- command itself): the reply is made of what the script already knows.

-- now is the server's clock in ms, read once per call and only by the
-- calls that need it.
local function now(op)
  if op.now == nil then
    op.now = now_ms()
  end
  return op.now
end

-- is_familiar reports whether one of the attempt's sources is familiar
-- to its user (redis_familiar.lua).
local function is_familiar(op)
  if not op.fam then
    return false
  end
  return familiar(op.fam.key, op.fam.from, op.fam.to, op.fam.now - op.fam.age)
end

-- learn teaches the attempt's sources to its user after a success, when
-- told to (redis_familiar.lua).
local function learn(op)
  if op.fam and op.fam.learn then
    teach(op.fam.key, op.fam.from, op.fam.to, op.fam.now, op.fam.age, op.fam.max)
  end
end

-- load_op parses KEYS and ARGV as described above; with_marker says KEYS
-- hold the token's settled marker (finish, record).
local function load_op(with_marker)
  local n = tonumber(ARGV[6])
  local m = with_marker and 1 or 0
  local f = tonumber(ARGV[7 + 3 * n])
  local indexed = #KEYS == 5 * n + m + (f > 0 and 1 or 0)
  local op = {
    attempt_cooloff = tonumber(ARGV[1]),
    pending_timeout = tonumber(ARGV[2]),
    lockout_memory = tonumber(ARGV[3]),
    token = ARGV[4],
    success = ARGV[5]:sub(-1) == '1',
    record = ARGV[5]:sub(1, 1) == 'r', -- the Finish round of a Record (redis_finish.lua)
    counters = {},
    cooloffs = {},
    transitions = {},
    marker = with_marker and KEYS[4 * n + 1] or nil,
  }
  for i = 1, n do
    local k = 4 * (i - 1)
    op.counters[i] = {
      index = i,
      failed = KEYS[k + 1],
      blocked = KEYS[k + 2],
      pending = KEYS[k + 3],
      lockouts = KEYS[k + 4],
      blocked_index = indexed and KEYS[4 * n + m + i] or nil,
      subject = ARGV[7 + 3 * (i - 1)],
      limit = tonumber(ARGV[8 + 3 * (i - 1)]),
      keep = ARGV[9 + 3 * (i - 1)] == '1', -- a success does not clear it
      charge = 0,      -- Begin's charge state, as replied
      lockouts_n = -1, -- lockouts so far, once read
      failed_n = nil,  -- the failure count, once read or written
      block_ttl = nil, -- PTTL of the block key (-2 none, -1 permanent), once read or written
    }
  end
  for _, c in ipairs(op.counters) do
    local flag = ARGV[9 + 3 * (c.index - 1)]
    if #flag > 1 then
      -- Distinct members: a failure adds the member, a success removes it
      -- (never the others: it is kept on success), a repeat adds nothing.
      c.member = flag:sub(3)
      c.keep = true
      c.report = flag:sub(1, 1) == 'r' -- its block refuses nobody
    elseif flag == 'f' or flag == 'u' then
      c.when = flag
    end
  end
  if f > 0 then
    op.fam = {
      key = KEYS[#KEYS],
      age = tonumber(ARGV[8 + 3 * n]),
      max = tonumber(ARGV[9 + 3 * n]),
      learn = ARGV[10 + 3 * n] == '1',
      now = tonumber(ARGV[11 + 3 * n]),
      from = 12 + 3 * n, -- the sources: ARGV[from..to]
      to = 7 + 3 * n + f,
    }
  end
  for j = 8 + 3 * n + f, #ARGV do
    op.cooloffs[#op.cooloffs + 1] = tonumber(ARGV[j])
  end
  -- Smart lockout: the counters whose condition does not hold are left
  -- out of op.counters, which every rule walks; op.all keeps them all
  -- for the reply.
  op.all = op.counters
  local familiar
  for _, c in ipairs(op.all) do
    if c.when then
      if familiar == nil then
        familiar = is_familiar(op)
      end
      if (c.when == 'f') ~= familiar then
        c.inactive = true
      end
    end
  end
  if familiar ~= nil then
    op.counters = {}
    for _, c in ipairs(op.all) do
      if not c.inactive then
        op.counters[#op.counters + 1] = c
      end
    end
  end
  return op
end

-- load_admin_op parses the KEYS and ARGV of an admin script (see above)
-- into an op of one counter.
local function load_admin_op()
  return {
    counters = { {
      index = 1,
      failed = KEYS[1],
      blocked = KEYS[2],
      pending = KEYS[3],
      lockouts = KEYS[4],
      blocked_index = KEYS[5],
      subject = ARGV[1],
      charge = 0,
      lockouts_n = -1,
    } },
    transitions = {},
  }
end

local function failures(c)
  if c.failed_n == nil then
    if c.member then
      c.failed_n = redis.call('SCARD', c.failed)
    else
      -- An admin call does not know the counter's type: a set of members
      -- answers GET with an error, and is counted by its size.
      local v = redis.pcall('GET', c.failed)
      if type(v) == 'table' and v.err then
        c.failed_n = redis.call('SCARD', c.failed)
      else
        c.failed_n = tonumber(v or '0')
      end
    end
  end
  return c.failed_n
end

-- add_member adds c's member to its set, renews the sliding TTL and
-- returns the count.
local function add_member(op, c, member)
  if redis.call('SADD', c.failed, member) == 1 or c.failed_n == nil then
    c.failed_n = redis.call('SCARD', c.failed)
  end
  if op.attempt_cooloff > 0 then
    redis.call('PEXPIRE', c.failed, op.attempt_cooloff)
  end
  return c.failed_n
end

-- remove_member forgets c's member: its username logged in.
local function remove_member(c)
  if redis.call('SREM', c.failed, c.member) == 1 and c.failed_n then
    c.failed_n = c.failed_n - 1
  end
end

local function block_ttl(c)
  if c.block_ttl == nil then
    c.block_ttl = redis.call('PTTL', c.blocked)
  end
  return c.block_ttl
end

local function is_blocked(c)
  return block_ttl(c) ~= -2
end

-- refuses reports whether c's block refuses the attempt: a report-only
-- counter's never does.
local function refuses(c)
  return not c.report and is_blocked(c)
end

local function add_transition(op, c, blocked, duration, permanent, nfailures, lockouts)
  local t = op.transitions
  t[#t + 1] = c.index
  t[#t + 1] = blocked and 1 or 0
  t[#t + 1] = duration
  t[#t + 1] = permanent and 1 or 0
  t[#t + 1] = nfailures
  t[#t + 1] = lockouts
  t[#t + 1] = now(op)
end

-- set_block blocks c for ms milliseconds (0: for ever), replacing any block,
-- and records the block's end in the index read by Blocked (when the
-- script holds the index; otherwise the caller indexes the transition).
local function set_block(op, c, ms)
  if ms > 0 then
    redis.call('SET', c.blocked, 'blocked', 'PX', ms)
    c.block_ttl = ms
  else
    redis.call('SET', c.blocked, 'blocked')
    c.block_ttl = -1
  end
  if c.blocked_index then
    redis.call('ZADD', c.blocked_index, ms > 0 and now(op) + ms or '+inf', c.subject)
  end
end

-- lock_out is the automatic block of c after nfailures failures: the
-- lockout count grows and picks the cool-off.
local function lock_out(op, c, nfailures)
  local lockouts = 1
  if op.lockout_memory > 0 then
    lockouts = redis.call('INCR', c.lockouts)
    redis.call('PEXPIRE', c.lockouts, op.lockout_memory)
  end
  local ms = op.cooloffs[math.min(lockouts, #op.cooloffs)]
  set_block(op, c, ms)
  add_transition(op, c, true, ms, ms == 0, nfailures, lockouts)
end

-- count_failures adds n failures to c, renews the sliding TTL and blocks c
-- when its count goes above the limit and it is not blocked already.
local function count_failures(op, c, n)
  local f
  if c.member then
    f = add_member(op, c, c.member)
  else
    f = redis.call('INCRBY', c.failed, n)
    c.failed_n = f
    if op.attempt_cooloff > 0 then
      redis.call('PEXPIRE', c.failed, op.attempt_cooloff)
    end
  end
  if f > c.limit and not is_blocked(c) then
    lock_out(op, c, f)
  end
end

-- settle_expired turns the charges whose deadline has passed into failures
-- counted at their deadlines, as if each had been reported then: the
-- count slides from each deadline, and what the attempt cool-off would
-- have forgotten by now is forgotten. With count_pending it also leaves
-- the number of charges still pending in c.pending_n, and reads nothing
-- more of a counter without charges. A counter where token (optional) was
-- among the expired charges gets c.expired_token.
local function settle_expired(op, count_pending, token)
  for _, c in ipairs(op.counters) do
    local due = {}
    if count_pending then
      c.pending_n = redis.call('ZCARD', c.pending)
      if c.pending_n > 0 then
        due = redis.call('ZRANGEBYSCORE', c.pending, '-inf', '(' .. now(op), 'WITHSCORES')
        c.pending_n = c.pending_n - #due / 2
      end
    else
      due = redis.call('ZRANGEBYSCORE', c.pending, '-inf', '(' .. now(op), 'WITHSCORES')
    end
    if #due > 0 and c.member then
      -- Each expired charge is a username whose outcome never came: a
      -- distinct failure, its token standing for the name.
      redis.call('ZREMRANGEBYSCORE', c.pending, '-inf', '(' .. op.now)
      for j = 1, #due, 2 do
        if due[j] == token then
          c.expired_token = true
        end
        add_member(op, c, due[j])
      end
      if c.failed_n > c.limit and not is_blocked(c) then
        lock_out(op, c, c.failed_n)
      end
    elseif #due > 0 then
      redis.call('ZREMRANGEBYSCORE', c.pending, '-inf', '(' .. op.now)
      local count, ends = 0, -math.huge
      local ttl = redis.call('PTTL', c.failed)
      if ttl == -1 then
        count, ends = failures(c), math.huge
      elseif ttl >= 0 then
        count, ends = failures(c), op.now + ttl
      end
      for j = 2, #due, 2 do
        if due[j - 1] == token then
          c.expired_token = true
        end
        local deadline = tonumber(due[j])
        if ends <= deadline then
          count = 0
        end
        count = count + 1
        if op.attempt_cooloff > 0 then
          ends = math.max(ends, deadline + op.attempt_cooloff)
        else
          ends = math.huge
        end
      end
      if ends == math.huge then
        redis.call('SET', c.failed, count)
      elseif ends > op.now then
        redis.call('SET', c.failed, count, 'PX', ends - op.now)
      else
        count = 0
        redis.call('DEL', c.failed)
      end
      c.failed_n = count
      if count > c.limit and not is_blocked(c) then
        lock_out(op, c, count)
      end
    end
  end
end

-- clear forgets c's failures and lifts its block (a transition if there was one).
-- An index entry left behind by a block that expired or was deleted by
-- hand is dropped by the next Blocked, which checks every entry's key.
local function clear(op, c)
  redis.call('DEL', c.failed)
  c.failed_n = 0
  local lifted = redis.call('DEL', c.blocked) == 1
  c.block_ttl = -2
  if lifted then
    add_transition(op, c, false, 0, false, 0, 0)
    if c.blocked_index then
      redis.call('ZREM', c.blocked_index, c.subject)
    end
  end
end

-- blocked_any reports whether some counter of op is blocked (report-only
-- counters refuse nobody).
local function blocked_any(op)
  for _, c in ipairs(op.counters) do
    if refuses(c) then
      return true
    end
  end
  return false
end

-- charge_pending adds op.token to c's pending set, due at now + pending
-- timeout (never, when the timeout is 0).
local function charge_pending(op, c)
  local deadline = '+inf'
  if op.pending_timeout > 0 then
    deadline = now(op) + op.pending_timeout
  end
  if redis.call('ZADD', c.pending, deadline, op.token) == 1 and c.pending_n then
    c.pending_n = c.pending_n + 1
  end
  if op.pending_timeout > 0 and op.attempt_cooloff > 0 then
    -- Once every charge is overdue by the attempt cool-off, the failures
    -- they would have become are forgotten too: the set may go.
    redis.call('PEXPIRE', c.pending, op.pending_timeout + op.attempt_cooloff)
  end
  c.charge = 3
end

-- count_now charges an attempt on c as a failure at once (its failure
-- needs no second call; a success clears it). Only for an attempt whose
-- failure does not take c above its limit: it never blocks.
local function count_now(op, c)
  if c.member then
    add_member(op, c, c.member)
  else
    c.failed_n = redis.call('INCR', c.failed)
    if op.attempt_cooloff > 0 then
      redis.call('PEXPIRE', c.failed, op.attempt_cooloff)
    end
  end
  c.charge = 2
end

-- marker_ttl is how long a token's settled marker lives: as long as a
-- charge may (the pending timeout; a day when charges never expire), and,
-- with long, at least the attempt cool-off (a day when failures are never
-- forgotten): a marker that keeps the transitions of a Record, or of a
-- Begin that refused, whose replay (a recall, for a Begin) may come as
-- long as the failure it reports would be counted. Only those: a marker
-- per Record for the cool-off would be ten times the markers under a
-- flood, when Redis nears maxmemory.
local function marker_ttl(op, long)
  local ttl = op.pending_timeout
  if ttl <= 0 then
    ttl = 86400000
  end
  if long then
    ttl = math.max(ttl, op.attempt_cooloff > 0 and op.attempt_cooloff or 86400000)
  end
  return ttl
end

-- remember keeps, in op.token's marker, the transitions this call made
-- and whether it admitted the attempt ("admitted,t1,t2,...", each
-- transition's values as replied), when it made any: the reply may reach
-- no one (a gate that gave up waiting for it replays the outcome), and
-- the replay, finding the marker, announces them (recall). Most calls
-- make none and write nothing here. long: see marker_ttl.
local function remember(op, admitted, long)
  if op.marker and #op.transitions > 0 then
    redis.call('SET', op.marker, (admitted and '1,' or '0,') .. table.concat(op.transitions, ','), 'PX', marker_ttl(op, long))
  end
end

-- recall reads what remember kept in op.token's marker: it puts the
-- transitions in op.transitions and returns whether the call admitted the
-- attempt; nil when the marker is absent. A marker of '1' (set by
-- settled, or a clear script) holds no transitions.
local function recall(op)
  local v = redis.call('GET', op.marker)
  if not v then
    return nil
  end
  local admitted = v:sub(1, 1) == '1'
  for x in v:sub(3):gmatch('[^,]+') do
    op.transitions[#op.transitions + 1] = tonumber(x)
  end
  return admitted
end

-- settled marks op.token's outcome as reported, and reports whether it
-- had been already: an outcome takes effect once. The marker lives as
-- long as a charge may (the pending timeout; a day when charges never
-- expire), unless remember keeps transitions in it.
local function settled(op)
  if redis.call('SET', op.marker, '1', 'NX', 'PX', marker_ttl(op, false)) then
    return false
  end
  recall(op)
  return true
end

-- reply is the flat integer reply described above. Only Begin's reply
-- carries the lockouts so far and the charges pending (with_lockouts);
-- other scripts send 0, which the Go side does not read.
local function reply(op, admitted, last_chance, with_lockouts)
  local all = op.all or op.counters
  local out = { admitted and 1 or 0, last_chance and 1 or 0, #all }
  for _, c in ipairs(all) do
    if c.inactive then
      for _, v in ipairs({ -1, 0, 0, 0, -1, 0 }) do
        out[#out + 1] = v
      end
    else
      local ttl = block_ttl(c)
      local state = 1
      if ttl == -2 or c.report then
        state, ttl = 0, 0
      elseif ttl == -1 then
        state, ttl = 2, 0
      end
      out[#out + 1] = failures(c)
      out[#out + 1] = state
      out[#out + 1] = ttl
      out[#out + 1] = c.charge
      if with_lockouts and c.lockouts_n < 0 then
        c.lockouts_n = tonumber(redis.call('GET', c.lockouts) or '0')
      end
      out[#out + 1] = with_lockouts and c.lockouts_n or 0
      out[#out + 1] = with_lockouts and c.pending_n or 0
    end
  end
  for _, v in ipairs(op.transitions) do
    out[#out + 1] = v
  end
  return out
end

