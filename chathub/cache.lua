#!lua name=chathub
-- chathub's server-side functions (FUNCTION LOAD REPLACE at start; kept in the AOF).
-- Each runs atomically in Valkey: one round trip per call, whatever it does.
-- chathub/functions.py loads them as library chathub_<tag> and each function as
-- chathub_<tag>_<name>, tag being a digest of this file, so hubs of two versions sharing
-- one Valkey (a rolling update) each keep and call their own.
--
-- Keys (P is the configured prefix; chathub/keys.py builds them and chathub passes every
-- fixed key in KEYS; per-node keys, whose set changes as hubs come and go, are built
-- here from P and the node ids in the P..'nodes' hash):
--   P..'ids'                 the last id issued, "<ms>-<seq>", for every stream
--   P..'{c:NAME}:s'          channel NAME's history stream (fields f, t, n)
--   P..'{c:NAME}:m'          channel NAME's members: user -> subscriptions on all hubs
--   P..'{c:NAME}:d'          ids of NAME's messages an operator deleted (chathub delete):
--                            history and recovery leave them out; expires with the stream
--   P..'w'                   whispers (fields f, t, to, n)
--   P..'wd'                  ids of deleted whispers
--   P..'q'                   the flush queue: every message (field c: channel, '' for a
--                            whisper) and every channel created (k = 'channel'), read by
--                            the flusher's consumer group and deleted once in PostgreSQL
--   P..'chans'               channel name -> 'public' | 'private'
--   P..'subs:'..node         node's subscriptions: NAME..'\n'..user -> count
--   P..'conns:'..node        node's connections: user -> count
--   P..'nodes'               live node -> last heartbeat ms
-- Ids come from one counter, so they are unique and increasing across every stream.

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Decimal strings without leading zeros compared exactly (Lua numbers are doubles and
-- lose precision above 2^53, while each part of an id goes up to 2^64-1).
local function dec_lt(a, b)
  if #a ~= #b then return #a < #b end
  return a < b
end

-- a < b for ids '<ms>-<seq>' in canonical form (chathub canonicalises every id it takes in)
local function id_lt(a, b)
  local ams, aseq = string.match(a, '(%d+)-(%d+)')
  local bms, bseq = string.match(b, '(%d+)-(%d+)')
  if ams ~= bms then return dec_lt(ams, bms) end
  return dec_lt(aseq, bseq)
end

-- The next id after the last one issued: the current ms, or the last ms with seq + 1 when
-- the clock has not moved on (or went back), as XADD '*' does.
local function next_id(idkey)
  local now = now_ms()
  local last = redis.call('GET', idkey)
  local id
  if last then
    local ms, seq = string.match(last, '(%d+)-(%d+)')
    if tonumber(ms) >= now then
      id = ms .. '-' .. (tonumber(seq) + 1)
    end
  end
  id = id or (now .. '-0')
  redis.call('SET', idkey, id)
  return id
end

-- Presence: a user is online when any live node has them in its conns hash.
local function online_elsewhere(prefix, user, node)
  for _, n in ipairs(redis.call('HKEYS', prefix .. 'nodes')) do
    if n ~= node and redis.call('HEXISTS', prefix .. 'conns:' .. n, user) == 1 then
      return true
    end
  end
  return false
end

local function clustered(prefix)
  return redis.call('HLEN', prefix .. 'nodes') > 1
end

-- Publish to the other hubs, when there are any: channel traffic on the channel's own
-- pub/sub channel (only hubs with subscribers to it listen), the rest on the bus.
-- Returns 1 when published, else 0 (the stamping hub then delivers at once instead of
-- waiting for its own message to come back in bus order).
local function publish(prefix, pubsub, payload)
  if clustered(prefix) then
    redis.call('PUBLISH', prefix .. pubsub, cjson.encode(payload))
    return 1
  end
  return 0
end

-- GCRA against one key, without spending: the key's next theoretical arrival time when
-- one more message fits now, else nil and the ms to wait.
local function gcra(rl_key, rate, burst, now)
  local interval = 1000.0 / rate
  local tat = tonumber(redis.call('GET', rl_key) or now)
  if tat < now then tat = now end
  local new_tat = tat + interval
  local allow_at = new_tat - burst * interval
  if now < allow_at then return nil, math.ceil(allow_at - now) end
  return new_tat, 0
end

local function spend(rl_key, new_tat, now)
  redis.call('SET', rl_key, string.format('%.3f', new_tat), 'PX', math.ceil(new_tat - now) + 1000)
end

local function hit(hits, hits_total, sender)
  redis.call('HINCRBY', hits, sender, 1)
  redis.call('INCR', hits_total)
end

-- Rate-limit (GCRA) against one key; returns nil when allowed, else ms to wait.
-- A rate of 0 means no limit (the HTTP API's publishes: its key has its own budget).
local function limited(rl_key, hits, hits_total, rate, burst, sender)
  if rate <= 0 then return nil end
  local now = now_ms()
  local new_tat, wait = gcra(rl_key, rate, burst, now)
  if not new_tat then
    hit(hits, hits_total, sender)
    return wait
  end
  spend(rl_key, new_tat, now)
  return nil
end

-- A chat in a channel in slow mode passes two budgets: the sender's chat budget (every
-- channel) and the sender's budget in this channel (slow_key, its own rate and burst).
-- Both are spent, or neither. Returns nil when allowed, else the ms until both allow it
-- and whether the channel's budget refused it.
local function limited_slow(rl_key, slow_key, hits, hits_total, rate, burst, srate, sburst,
                            sender)
  local now = now_ms()
  local slow_tat, slow_wait = gcra(slow_key, srate, sburst, now)
  local tat, wait = nil, 0
  if rate > 0 then tat, wait = gcra(rl_key, rate, burst, now) end
  if not slow_tat or (rate > 0 and not tat) then
    hit(hits, hits_total, sender)
    return math.max(slow_wait, wait), not slow_tat
  end
  spend(slow_key, slow_tat, now)
  if tat then spend(rl_key, tat, now) end
  return nil
end

-- A resend: the id a message with this key (a connection's ref) and the same text was
-- stamped with, or nil. After a stamp whose answer did not reach the hub (a timeout),
-- the sender cannot know whether it was stored; resending with the same ref is then safe.
local function resent(dedup_key, text)
  if not dedup_key then return nil end
  local v = redis.call('GET', dedup_key)
  if not v then return nil end
  local sep = string.find(v, ' ', 1, true)
  if string.sub(v, sep + 1) ~= redis.sha1hex(text) then return nil end  -- ref reused
  return string.sub(v, 1, sep - 1)
end

-- How long a resend is recognised, ms: a sender resends within seconds of a timeout
-- answer (valkey.timeout, 2 s by default), or after an outage of up to this long.
local RESEND_WINDOW_MS = 120000

local function remember(dedup_key, id, text)
  if dedup_key then
    redis.call('SET', dedup_key, id .. ' ' .. redis.sha1hex(text), 'PX', RESEND_WINDOW_MS)
  end
end

-- Rate-limit, then stamp a chat in a channel: append to the channel's stream and to the
-- flush queue with one new id, and tell the other hubs.
-- KEYS: channel stream, flush queue, ids, rate-limit key, hits hash, hits total, and
-- optionally the channel's deleted set (its expiry follows the stream's) and the resend
-- key of the sender's (connection, ref), and last, when the channel is in slow mode, the
-- sender's budget in the channel
-- ARGV: rate, burst, from, text, channel, prefix, node, history ttl ms, and in slow mode
-- the channel's rate and burst
-- Returns {1, id, published} accepted, {0, retry_after_ms, slow (0|1)} over the limit,
-- {3, id} when it is a resend of a message stamped already (nothing stored or published
-- again).
local function accept_chat(keys, args)
  local srate = tonumber(args[9] or '0')
  local slow_key = nil
  if srate > 0 then
    if #keys < 8 then return redis.error_reply('slow mode needs the deleted set and its own key') end
    slow_key = keys[#keys]
  end
  local dedup = nil
  if #keys >= (slow_key and 9 or 8) then dedup = keys[8] end
  local again = resent(dedup, args[4])
  if again then return {3, again} end
  if slow_key then
    local wait, by_channel = limited_slow(keys[4], slow_key, keys[5], keys[6], tonumber(args[1]),
                                          tonumber(args[2]), srate, tonumber(args[10]), args[3])
    if wait then return {0, wait, by_channel and 1 or 0} end
  else
    local wait = limited(keys[4], keys[5], keys[6], tonumber(args[1]), tonumber(args[2]), args[3])
    if wait then return {0, wait, 0} end
  end
  local prefix, node, channel = args[6], args[7], args[5]
  local id = next_id(keys[3])
  remember(dedup, id, args[4])
  redis.call('XADD', keys[1], id, 'f', args[3], 't', args[4], 'n', node)
  redis.call('PEXPIRE', keys[1], tonumber(args[8]))
  if keys[7] then redis.call('PEXPIRE', keys[7], tonumber(args[8])) end
  redis.call('XADD', keys[2], id, 'c', channel, 'f', args[3], 't', args[4], 'n', node)
  return {1, id, publish(prefix, 'bus:c:' .. channel,
                         {k = 'm', n = node, id = id, c = channel, f = args[3], t = args[4]})}
end

-- Rate-limit, then stamp a whisper. KEYS: whisper stream, flush queue, ids, rate-limit
-- key, hits hash, hits total, optionally the resend key. ARGV: rate, burst, from, text,
-- to, prefix, node. Returns {1, id, published}, {0, retry_after_ms}, {3, id} for a
-- resend, or {2} when the recipient is online nowhere.
local function accept_whisper(keys, args)
  local again = resent(keys[7], args[4])
  if again then return {3, again} end
  local prefix, node, to = args[6], args[7], args[5]
  if redis.call('HEXISTS', prefix .. 'conns:' .. node, to) == 0
      and not online_elsewhere(prefix, to, node) then
    return {2}
  end
  local wait = limited(keys[4], keys[5], keys[6], tonumber(args[1]), tonumber(args[2]), args[3])
  if wait then return {0, wait} end
  local id = next_id(keys[3])
  remember(keys[7], id, args[4])
  redis.call('XADD', keys[1], id, 'f', args[3], 't', args[4], 'to', to, 'n', node)
  redis.call('XADD', keys[2], id, 'c', '', 'f', args[3], 't', args[4], 'to', to, 'n', node)
  return {1, id, publish(prefix, 'bus', {k = 'm', n = node, id = id, f = args[3], t = args[4], to = to})}
end

-- A batch of chats and whispers in one call: the hub stamps a batch per round trip, and
-- one function call costs the hub's client about a quarter of what a pipelined call per
-- message does (packing and reading back each command, in Python). Messages are taken in
-- order, each one as accept_chat or accept_whisper would take it alone.
-- KEYS: every message's keys, one message after another.
-- ARGV: per message, its kind ('c' chat | 'w' whisper), how many keys and how many
-- arguments it has, then its arguments.
-- Returns one reply per message, as accept_chat or accept_whisper gives it, or
-- {-1, error text} for a message that failed alone (the others still count).
local function accept_many(keys, args)
  local out, k, a = {}, 1, 1
  while a <= #args do
    local accept = args[a] == 'w' and accept_whisper or accept_chat
    local nk, na = tonumber(args[a + 1]), tonumber(args[a + 2])
    local ok, res = pcall(accept, {unpack(keys, k, k + nk - 1)}, {unpack(args, a + 3, a + 2 + na)})
    if not ok then
      out[#out + 1] = {-1, type(res) == 'table' and res.err or tostring(res)}
    elseif type(res) == 'table' and res.err then
      out[#out + 1] = {-1, res.err}
    else
      out[#out + 1] = res
    end
    k, a = k + nk, a + 3 + na
  end
  return out
end

local function all_users(prefix)
  local seen, users = {}, {}
  for _, n in ipairs(redis.call('HKEYS', prefix .. 'nodes')) do
    for _, u in ipairs(redis.call('HKEYS', prefix .. 'conns:' .. n)) do
      if not seen[u] then
        seen[u] = true
        users[#users + 1] = u
      end
    end
  end
  table.sort(users)
  return users
end

-- A connection opened. ARGV: prefix, node, user. Returns this node's connections of the user.
local function connect(keys, args)
  return redis.call('HINCRBY', args[1] .. 'conns:' .. args[2], args[3], 1)
end

-- A connection closed. ARGV: prefix, node, user. Returns 1 for the user's last anywhere.
local function disconnect(keys, args)
  local prefix, node, user = args[1], args[2], args[3]
  local key = prefix .. 'conns:' .. node
  local n = redis.call('HINCRBY', key, user, -1)
  if n > 0 then return 0 end
  redis.call('HDEL', key, user)
  return online_elsewhere(prefix, user, node) and 0 or 1
end

-- Everyone online, sorted. ARGV: prefix, and 'cluster' to answer only when this hub
-- is not alone (a hub alone knows its users already).
local function users(keys, args)
  if args[2] == 'cluster' and not clustered(args[1]) then return false end
  return all_users(args[1])
end

-- The set of channels a client's subscribe created (Keys.on_demand in keys.py).
local function on_demand_key(prefix)
  return prefix .. 'chans:demand'
end

-- A channel a client's subscribe created (not an operator, not auto_join) may be
-- forgotten once nobody is in it and Valkey holds none of its history (never written to,
-- or expired after history_ttl): nothing of it would be lost, PostgreSQL keeps its row
-- and messages, and the next subscribe creates it again. Returns true when forgotten.
local function reclaim(prefix, registry, channel)
  local c = prefix .. '{c:' .. channel .. '}:'
  if redis.call('EXISTS', c .. 'm', c .. 's') > 0 then return false end
  redis.call('HDEL', registry, channel)
  redis.call('SREM', on_demand_key(prefix), channel)
  return true
end

-- channels created on demand looked at, at most, by one subscribe that finds
-- max_channels reached: bounds its work (one EXISTS each)
local RECLAIM_SCAN = 256

-- Make room for one more channel when max channels are reached, by forgetting channels
-- clients created and left (see reclaim). Done only at the limit, so a channel left and
-- joined again is not forgotten and recreated each time; clients that create channels and
-- leave them cannot fill the server for good. Walks the on-demand set with SSCAN from
-- where the last call stopped, so repeated calls cover all of it. True when there is room.
local function make_room(prefix, registry, max)
  local on_demand = on_demand_key(prefix)
  local at = on_demand .. ':cursor'
  local cursor, looked = redis.call('GET', at) or '0', 0
  repeat
    local page = redis.call('SSCAN', on_demand, cursor, 'COUNT', 64)
    cursor = page[1]
    for _, channel in ipairs(page[2]) do
      looked = looked + 1
      if reclaim(prefix, registry, channel) and redis.call('HLEN', registry) < max then
        redis.call('SET', at, cursor)
        return true
      end
    end
  until cursor == '0' or looked >= RECLAIM_SCAN
  redis.call('SET', at, cursor)
  return redis.call('HLEN', registry) < max
end

-- Subscribe a user's connection to a channel, creating the channel when allowed.
-- KEYS: members hash, channel registry, this node's subs hash, flush queue, ids
-- ARGV: prefix, node, channel, user, ts, create ('0': no; '1': yes, kept (auto_join);
-- '2': yes, on demand), max channels, private ('1' | '0'), want members ('1' | '0')
-- Returns {status, first (1|0), members or false}; status 'ok', 'unknown' (no such
-- channel and no creating), 'full' (max channels reached).
local function subscribe(keys, args)
  local prefix, node, channel, user = args[1], args[2], args[3], args[4]
  if redis.call('HEXISTS', keys[2], channel) == 0 then
    if args[6] == '0' then return {'unknown', 0, false} end
    local max = tonumber(args[7])
    if redis.call('HLEN', keys[2]) >= max and not make_room(prefix, keys[2], max) then
      return {'full', 0, false}
    end
    redis.call('HSET', keys[2], channel, args[8] == '1' and 'private' or 'public')
    if args[6] == '2' then redis.call('SADD', on_demand_key(prefix), channel) end
    local id = next_id(keys[5])
    redis.call('XADD', keys[4], id, 'k', 'channel', 'c', channel, 'p', args[8], 'by', user)
  end
  redis.call('HINCRBY', keys[3], channel .. '\n' .. user, 1)
  local n = redis.call('HINCRBY', keys[1], user, 1)
  local first = n == 1
  if first then
    publish(prefix, 'bus:c:' .. channel, {k = 'join', n = node, c = channel, u = user, ts = tonumber(args[5])})
  end
  local members = false
  if args[9] == '1' then
    members = redis.call('HKEYS', keys[1])
    table.sort(members)
  end
  return {'ok', first and 1 or 0, members}
end

-- Create a channel (an operator's `chathub channel create`). KEYS: channel registry,
-- flush queue, ids. ARGV: channel, private ('1' | '0'), created by, max channels, prefix.
-- Returns 'ok', 'exists' or 'full'. A channel a subscribe created is kept from then on;
-- at max channels, room is made as for a subscribe.
local function create(keys, args)
  if redis.call('HEXISTS', keys[1], args[1]) == 1 then
    redis.call('SREM', on_demand_key(args[5]), args[1])
    return 'exists'
  end
  local max = tonumber(args[4])
  if redis.call('HLEN', keys[1]) >= max and not make_room(args[5], keys[1], max) then
    return 'full'
  end
  redis.call('HSET', keys[1], args[1], args[2] == '1' and 'private' or 'public')
  redis.call('XADD', keys[2], next_id(keys[3]), 'k', 'channel', 'c', args[1], 'p', args[2], 'by', args[3])
  return 'ok'
end

-- Unsubscribe one connection of a user. KEYS: members hash, this node's subs hash.
-- ARGV: prefix, node, channel, user, ts, reason. Returns 1 when it was the user's last
-- subscription to the channel on any hub (a leave was published).
local function unsubscribe(keys, args)
  local prefix, node, channel, user = args[1], args[2], args[3], args[4]
  local field = channel .. '\n' .. user
  if redis.call('HINCRBY', keys[2], field, -1) <= 0 then redis.call('HDEL', keys[2], field) end
  local n = redis.call('HINCRBY', keys[1], user, -1)
  if n > 0 then return 0 end
  redis.call('HDEL', keys[1], user)
  publish(prefix, 'bus:c:' .. channel, {k = 'leave', n = node, c = channel, u = user,
                                       ts = tonumber(args[5]), r = args[6]})
  return 1
end

-- Members of a channel, sorted. KEYS: members hash.
local function members(keys, args)
  local m = redis.call('HKEYS', keys[1])
  table.sort(m)
  return m
end

-- Public channels with member counts: {name, count, ...}. KEYS: channel registry.
-- ARGV: prefix, and '1' to include private ones.
local function channels(keys, args)
  local out = {}
  local all = redis.call('HGETALL', keys[1])
  for i = 1, #all, 2 do
    if all[i + 1] == 'public' or args[2] == '1' then
      out[#out + 1] = all[i]
      out[#out + 1] = redis.call('HLEN', args[1] .. '{c:' .. all[i] .. '}:m')
      out[#out + 1] = all[i + 1]
    end
  end
  return out
end

-- Replace a node's presence with what it knows (after Valkey came back).
-- ARGV: prefix, node, then user, count pairs, then '--', then channel, user, count triples.
local function resync(keys, args)
  local prefix, node = args[1], args[2]
  local conns = prefix .. 'conns:' .. node
  local subs = prefix .. 'subs:' .. node
  -- take this node's old channel subscriptions out of the members hashes
  local old = redis.call('HGETALL', subs)
  for i = 1, #old, 2 do
    local channel, user = string.match(old[i], '^(.-)\n(.*)$')
    local m = prefix .. '{c:' .. channel .. '}:m'
    if redis.call('HINCRBY', m, user, -tonumber(old[i + 1])) <= 0 then redis.call('HDEL', m, user) end
  end
  redis.call('DEL', conns, subs)
  local i = 3
  while i <= #args and args[i] ~= '--' do
    redis.call('HSET', conns, args[i], args[i + 1])
    i = i + 2
  end
  i = i + 1
  while i + 2 <= #args do
    redis.call('HSET', subs, args[i] .. '\n' .. args[i + 1], args[i + 2])
    redis.call('HINCRBY', prefix .. '{c:' .. args[i] .. '}:m', args[i + 1], tonumber(args[i + 2]))
    i = i + 3
  end
  return 1
end

local function last_id(idkey)
  return redis.call('GET', idkey) or '0-0'
end

-- The oldest message not yet in PostgreSQL ('' when none waits). KEYS-free helper.
local function flush_floor(queue)
  local first = redis.call('XRANGE', queue, '-', '+', 'COUNT', 1)
  if #first == 0 then return '' end
  return first[1][1]
end

-- entries of the flush queue a history call looks through for the channel's messages
local UNFLUSHED_SCAN = 1000

-- Whether a stream entry is in the deleted set (false when there is no set).
local function deleted(dkey, id)
  return dkey ~= nil and redis.call('SISMEMBER', dkey, id) == 1
end

-- Up to limit entries of a stream older than upper, newest first, skipping deleted ids
-- (read in chunks until limit are kept or the stream runs out). The scan is bounded by
-- the stream, which the flusher trims to about history_size: a page over a stream whose
-- 1,000 entries are all deleted took about 2-5 ms (docs/performance.md).
-- Returns the entries and the oldest id scanned ('' when none).
local function newest_kept(stream, dkey, upper, limit)
  if dkey ~= nil and redis.call('EXISTS', dkey) == 0 then dkey = nil end
  local out, oldest = {}, ''
  while #out < limit do
    local want = limit - #out
    local chunk = redis.call('XREVRANGE', stream, upper, '-', 'COUNT', want)
    for _, e in ipairs(chunk) do
      if not deleted(dkey, e[1]) then out[#out + 1] = e end
      oldest = e[1]
    end
    if #chunk < want then break end
    upper = '(' .. oldest
  end
  return out, oldest
end

-- History of one channel older than ARGV[1] ('+' for the newest), at most ARGV[2]
-- entries, newest first, without deleted messages. KEYS: stream, ids, flush queue, and
-- optionally the channel's deleted set. ARGV[3]: the channel.
-- Returns {entries, exhausted (1|0), oldest id scanned or '', last id issued,
-- unflushed (1 when older messages of the channel are still on their way to PostgreSQL),
-- the channel's newest id ('0-0' for an empty stream), the stream's length}.
local function history(keys, args)
  local limit = tonumber(args[2])
  local upper = args[1]
  if upper ~= '+' then upper = '(' .. upper end
  local out, scanned = newest_kept(keys[1], keys[4], upper, limit)
  local top = last_id(keys[2])
  -- Ids are issued and added to their stream in one call, so every id of this channel
  -- at or below top is in the stream already: its newest entry bounds what a reader of
  -- this history can receive again, however far other channels moved top.
  local newest = redis.call('XREVRANGE', keys[1], '+', '-', 'COUNT', 1)
  local floor = newest[1] and newest[1][1] or '0-0'
  if #out >= limit then return {out, 0, scanned, top, 0, floor, redis.call('XLEN', keys[1])} end
  local oldest = scanned
  -- The stream ran out. Older messages are in PostgreSQL, unless some below the bound
  -- are still in the flush queue: then a page from PostgreSQL would have a hole.
  local bound = oldest
  if bound == '' and args[1] ~= '+' then bound = args[1] end
  local upper_q = '+'
  if bound ~= '' then upper_q = '(' .. bound end
  local unflushed = 0
  local waiting = redis.call('XRANGE', keys[3], '-', upper_q, 'COUNT', UNFLUSHED_SCAN + 1)
  if #waiting > UNFLUSHED_SCAN then
    unflushed = 1  -- a long queue: assume some of this channel's are in it
  else
    for _, e in ipairs(waiting) do
      local f = e[2]
      for i = 1, #f, 2 do
        if f[i] == 'c' and f[i + 1] == args[3] then unflushed = 1 end
        if f[i] == 'k' then break end  -- a channel record, not a message
      end
      if unflushed == 1 then break end
    end
  end
  return {out, 1, oldest, top, unflushed, floor, redis.call('XLEN', keys[1])}
end

-- What a client missed after ARGV[1] in one stream, oldest first, without deleted
-- messages. KEYS: stream, ids, and optionally the stream's deleted set.
-- ARGV: since, limit, user ('' for a channel; for the whisper stream, only the user's).
-- Returns {1, entries, last id} when complete, {0} when the stream no longer reaches
-- back to since, since is newer than any id issued, or more than limit entries followed.
local function recover(keys, args)
  local since, limit, user = args[1], tonumber(args[2]), args[3]
  local top = last_id(keys[2])
  if id_lt(top, since) then return {0} end
  -- Entries after since may be gone: trimmed (the stream's max-deleted-entry-id is past
  -- since), or, for a channel, lost with a stream that expired and started again (its
  -- first entry is past since although nothing was ever trimmed).
  if redis.call('EXISTS', keys[1]) == 1 then
    local info = redis.call('XINFO', 'STREAM', keys[1])
    local maxdel, first = '0-0', nil
    for i = 1, #info, 2 do
      if info[i] == 'max-deleted-entry-id' then maxdel = info[i + 1]
      elseif info[i] == 'first-entry' and info[i + 1] then first = info[i + 1][1] end
    end
    if id_lt(since, maxdel) then return {0} end
    if user == '' and maxdel == '0-0' and first and since ~= '0-0' and id_lt(since, first) then
      return {0}
    end
  elseif user == '' and since ~= top and since ~= '0-0' then
    return {0}  -- the channel's history expired or was lost: what followed since is unknown
  end
  local out = {}
  local lower = '(' .. since
  local dkey = keys[3]
  if dkey ~= nil and redis.call('EXISTS', dkey) == 0 then dkey = nil end
  while true do
    local chunk = redis.call('XRANGE', keys[1], lower, '+', 'COUNT', 500)
    if #chunk == 0 then return {1, out, top} end
    for _, e in ipairs(chunk) do
      local keep = not deleted(dkey, e[1])
      if keep and user ~= '' then
        local f, from, to = e[2], nil, nil
        for i = 1, #f, 2 do
          if f[i] == 'f' then from = f[i + 1] elseif f[i] == 'to' then to = f[i + 1] end
        end
        keep = from == user or to == user
      end
      if keep then
        out[#out + 1] = e
        if #out > limit then return {0} end
      end
      lower = '(' .. e[1]
    end
  end
end

-- Mark messages deleted (chathub delete / purge): history and recovery leave them out
-- from now on, and the other hubs are told to take them off their clients' screens.
-- KEYS: the deleted set (a channel's, or the whispers'). ARGV: prefix, node, channel
-- ('' for whispers), ttl ms (0: none), sender, recipient ('' for a channel), then the ids.
-- Returns the ids that were not marked before (only those are announced).
local function delete(keys, args)
  local prefix, node, channel = args[1], args[2], args[3]
  local ids = {}
  for i = 7, #args do
    if redis.call('SADD', keys[1], args[i]) == 1 then ids[#ids + 1] = args[i] end
  end
  if #ids == 0 then return ids end
  if tonumber(args[4]) > 0 then
    -- as long as the stream lives, which accept_chat extends on every message
    redis.call('PEXPIRE', keys[1], math.max(tonumber(args[4]), redis.call('PTTL', keys[1])))
  end
  if channel ~= '' then
    publish(prefix, 'bus:c:' .. channel, {k = 'del', n = node, c = channel, ids = ids})
  else
    publish(prefix, 'bus', {k = 'del', n = node, ids = ids, f = args[5], to = args[6]})
  end
  return ids
end

-- Trim history streams to about ARGV[1] entries each, never below the oldest message
-- still in the flush queue. KEYS: flush queue, then the streams. Returns entries removed.
local function trim(keys, args)
  local keep = tonumber(args[1])
  local floor = flush_floor(keys[1])
  local removed = 0
  for i = 2, #keys do
    local len = redis.call('XLEN', keys[i])
    if len > keep then
      -- Cut the oldest len - keep entries, or fewer: none at or after the floor. Reading
      -- at most keep + 1 entries decides which, however long a backlog made the stream
      -- (reading the len - keep entries to be cut made each flush O(backlog)).
      local unflushed = 0
      if floor ~= '' then
        unflushed = #redis.call('XRANGE', keys[i], floor, '+', 'COUNT', keep + 1)
      end
      if unflushed <= keep then  -- everything past the newest keep entries is flushed
        removed = removed + redis.call('XTRIM', keys[i], 'MAXLEN', keep)
      else
        removed = removed + redis.call('XTRIM', keys[i], 'MINID', floor)
      end
    end
  end
  return removed
end

-- Move a stream of chathub 0.1 (one stream for every message, P..'msgs') into the
-- channel layout: public messages to 'general', whispers to the whisper stream, every
-- entry to the flush queue (PostgreSQL ignores the ones it has). KEYS: old stream,
-- general's stream, whisper stream, flush queue, ids. Returns entries moved.
local function upgrade(keys, args)
  if redis.call('EXISTS', keys[1]) == 0 then return 0 end
  local moved, lower = 0, '-'
  local top = '0-0'
  while true do
    local chunk = redis.call('XRANGE', keys[1], lower, '+', 'COUNT', 500)
    if #chunk == 0 then break end
    for _, e in ipairs(chunk) do
      local f = e[2]
      local from, text, to, node = '', '', nil, ''
      for i = 1, #f, 2 do
        if f[i] == 'f' then from = f[i + 1] elseif f[i] == 't' then text = f[i + 1]
        elseif f[i] == 'to' then to = f[i + 1] elseif f[i] == 'n' then node = f[i + 1] end
      end
      if to then
        redis.call('XADD', keys[3], e[1], 'f', from, 't', text, 'to', to, 'n', node)
        redis.call('XADD', keys[4], e[1], 'c', '', 'f', from, 't', text, 'to', to, 'n', node)
      else
        redis.call('XADD', keys[2], e[1], 'f', from, 't', text, 'n', node)
        redis.call('XADD', keys[4], e[1], 'c', 'general', 'f', from, 't', text, 'n', node)
      end
      moved = moved + 1
      top = e[1]
      lower = '(' .. e[1]
    end
  end
  local info = redis.call('XINFO', 'STREAM', keys[1])
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then top = info[i + 1] end
  end
  local last = redis.call('GET', keys[5])
  if not last or id_lt(last, top) then redis.call('SET', keys[5], top) end
  redis.call('DEL', keys[1])
  return moved
end

-- Close out a node that died without a goodbye: its open sessions go to the session
-- stream with the reason given, its presence is removed, and users it alone had are
-- announced as gone (from every channel they were in). KEYS: open-sessions hash,
-- heartbeat key, sessions stream, nodes hash.
-- ARGV: node id, reason, fallback last-alive ms, key prefix, reaping node id.
-- Returns {users now online nowhere, sessions closed out, {channel, user, ...} left};
-- {{}, -1, {}} when the node is alive.
local function reap(keys, args)
  if redis.call('EXISTS', keys[2]) == 1 then return {{}, -1, {}} end
  local prefix, dead, reaper = args[4], args[1], args[5]
  local last_alive = tonumber(redis.call('HGET', keys[4], dead) or args[3])
  local open = redis.call('HGETALL', keys[1])
  local closed = 0
  for i = 1, #open, 2 do
    local s = cjson.decode(open[i + 1])
    -- alive at least until the last heartbeat, and at least when this session opened
    s['disconnected_at'] = math.max(last_alive, tonumber(s['connected_at']) or 0)
    s['close_reason'] = args[2]
    redis.call('XADD', keys[3], '*', 's', cjson.encode(s))
    closed = closed + 1
  end
  redis.call('DEL', keys[1])
  redis.call('HDEL', keys[4], dead)
  local conns = prefix .. 'conns:' .. dead
  local gone = {}
  for _, u in ipairs(redis.call('HKEYS', conns)) do
    if not online_elsewhere(prefix, u, dead) then gone[#gone + 1] = u end
  end
  redis.call('DEL', conns)
  local now = now_ms()
  local left = {}
  local subs = prefix .. 'subs:' .. dead
  local all = redis.call('HGETALL', subs)
  for i = 1, #all, 2 do
    local channel, user = string.match(all[i], '^(.-)\n(.*)$')
    local m = prefix .. '{c:' .. channel .. '}:m'
    if redis.call('HINCRBY', m, user, -tonumber(all[i + 1])) <= 0 then
      redis.call('HDEL', m, user)
      left[#left + 1] = channel
      left[#left + 1] = user
      publish(prefix, 'bus:c:' .. channel, {k = 'leave', n = reaper, c = channel, u = user,
                                           ts = now, r = args[2]})
    end
  end
  redis.call('DEL', subs)
  return {gone, closed, left}
end

redis.register_function('chathub_accept_chat', accept_chat)
redis.register_function('chathub_accept_whisper', accept_whisper)
redis.register_function('chathub_accept_many', accept_many)
redis.register_function{function_name = 'chathub_history', callback = history, flags = {'no-writes'}}
redis.register_function{function_name = 'chathub_recover', callback = recover, flags = {'no-writes'}}
redis.register_function('chathub_trim', trim)
redis.register_function('chathub_delete', delete)
redis.register_function('chathub_upgrade', upgrade)
redis.register_function('chathub_reap', reap)
redis.register_function('chathub_connect', connect)
redis.register_function('chathub_disconnect', disconnect)
redis.register_function('chathub_subscribe', subscribe)
redis.register_function('chathub_unsubscribe', unsubscribe)
redis.register_function('chathub_create', create)
redis.register_function{function_name = 'chathub_members', callback = members, flags = {'no-writes'}}
redis.register_function{function_name = 'chathub_channels', callback = channels, flags = {'no-writes'}}
redis.register_function{function_name = 'chathub_users', callback = users, flags = {'no-writes'}}
redis.register_function('chathub_resync', resync)
