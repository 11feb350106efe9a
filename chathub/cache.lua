#!lua name=chathub
-- chathub's server-side functions (FUNCTION LOAD REPLACE at start; kept in the AOF).
-- Each runs atomically in Valkey: one round trip per call, whatever it does.

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Presence: every node keeps its users in `<prefix>conns:<node>` (user -> connections);
-- live nodes are the fields of `<prefix>nodes`. A user is online when any node has them.
local function online_elsewhere(prefix, user, node)
  for _, n in ipairs(redis.call('HKEYS', prefix .. 'nodes')) do
    if n ~= node and redis.call('HEXISTS', prefix .. 'conns:' .. n, user) == 1 then
      return true
    end
  end
  return false
end

-- Publish to the other hubs, when there are any.
local function publish(prefix, payload)
  if redis.call('HLEN', prefix .. 'nodes') > 1 then
    redis.call('PUBLISH', prefix .. 'bus', cjson.encode(payload))
  end
end

-- Rate-limit (GCRA), then stamp: append to the message stream (with the stamping node,
-- so a hub can fill a gap in its subscription from it) and tell the other hubs.
-- KEYS: stream, rate-limit key, hits hash, hits total
-- ARGV: rate per second, burst, from, text, to ('' for public chat), key prefix, node id
-- Returns {1, id} when accepted, {0, retry_after_ms} when over the limit,
-- {2} when the whisper's recipient is online nowhere.
local function accept(keys, args)
  local prefix, node = args[6], args[7]
  if args[5] ~= '' and redis.call('HEXISTS', prefix .. 'conns:' .. node, args[5]) == 0
      and not online_elsewhere(prefix, args[5], node) then
    return {2}
  end
  local rate = tonumber(args[1])
  local burst = tonumber(args[2])
  local now = now_ms()
  local interval = 1000.0 / rate
  local tat = tonumber(redis.call('GET', keys[2]) or now)
  if tat < now then tat = now end
  local new_tat = tat + interval
  local allow_at = new_tat - burst * interval
  if now < allow_at then
    redis.call('HINCRBY', keys[3], args[3], 1)
    redis.call('INCR', keys[4])
    return {0, math.ceil(allow_at - now)}
  end
  redis.call('SET', keys[2], string.format('%.3f', new_tat), 'PX', math.ceil(new_tat - now) + 1000)
  local id
  if args[5] == '' then
    id = redis.call('XADD', keys[1], '*', 'f', args[3], 't', args[4], 'n', node)
    publish(prefix, {k = 'm', n = node, id = id, f = args[3], t = args[4]})
  else
    id = redis.call('XADD', keys[1], '*', 'f', args[3], 't', args[4], 'to', args[5], 'n', node)
    publish(prefix, {k = 'm', n = node, id = id, f = args[3], t = args[4], to = args[5]})
  end
  return {1, id}
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

-- A connection opened. ARGV: prefix, node, user, ts.
-- Returns 1 when this is the user's first connection anywhere (then join is due).
local function connect(keys, args)
  local prefix, node, user = args[1], args[2], args[3]
  local n = redis.call('HINCRBY', prefix .. 'conns:' .. node, user, 1)
  local first = n == 1 and not online_elsewhere(prefix, user, node)
  if first then
    publish(prefix, {k = 'join', n = node, u = user, ts = tonumber(args[4])})
  end
  return first and 1 or 0
end

-- A connection closed. ARGV: prefix, node, user, ts, reason.
-- Returns 1 when it was the user's last connection anywhere.
local function disconnect(keys, args)
  local prefix, node, user = args[1], args[2], args[3]
  local key = prefix .. 'conns:' .. node
  local n = redis.call('HINCRBY', key, user, -1)
  if n > 0 then return 0 end
  redis.call('HDEL', key, user)
  if online_elsewhere(prefix, user, node) then return 0 end
  publish(prefix, {k = 'leave', n = node, u = user, ts = tonumber(args[4]), r = args[5]})
  return 1
end

-- Everyone online, sorted. ARGV: prefix, and 'cluster' to answer only when this hub
-- is not alone (a hub alone knows its users already).
local function users(keys, args)
  if args[2] == 'cluster' and redis.call('HLEN', args[1] .. 'nodes') <= 1 then return false end
  return all_users(args[1])
end

-- Replace a node's presence with what it knows (after Valkey came back).
-- ARGV: prefix, node, then user, count pairs.
local function resync(keys, args)
  local key = args[1] .. 'conns:' .. args[2]
  redis.call('DEL', key)
  for i = 3, #args, 2 do
    redis.call('HSET', key, args[i], args[i + 1])
  end
  return (#args - 2) / 2
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

local function last_id(key)
  local info = redis.call('XINFO', 'STREAM', key)
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then return info[i + 1] end
  end
  return '0-0'
end

local function is_public(fields)
  for i = 1, #fields, 2 do
    if fields[i] == 'to' then return false end
  end
  return true
end

-- Public history older than ARGV[1] ('+' for the newest), at most ARGV[2] entries,
-- newest first. KEYS: stream. Returns {entries, exhausted(1|0), oldest id scanned or '',
-- the stream's last id}.
local function history(keys, args)
  local limit = tonumber(args[2])
  local upper = args[1]
  if upper ~= '+' then upper = '(' .. upper end
  local out = {}
  local last = ''
  local top = last_id(keys[1])
  while #out < limit do
    local chunk = redis.call('XREVRANGE', keys[1], upper, '-', 'COUNT', 200)
    if #chunk == 0 then return {out, 1, last, top} end
    for _, e in ipairs(chunk) do
      last = e[1]
      if is_public(e[2]) then
        out[#out + 1] = e
        if #out >= limit then return {out, 0, last, top} end
      end
    end
    upper = '(' .. last
  end
  return {out, 0, last, top}
end

-- What a user missed after ARGV[1]: public chat and the user's whispers, oldest first.
-- KEYS: stream. ARGV: since, user, limit.
-- Returns {1, entries, the stream's last id} when complete, {0} when the stream no longer
-- reaches back to since (or is empty: a new Valkey), since is newer than the stream's last
-- id, or more than limit entries followed it.
local function recover(keys, args)
  local since, user, limit = args[1], args[2], tonumber(args[3])
  local first = redis.call('XRANGE', keys[1], '-', '+', 'COUNT', 1)
  -- Every id a client saw came from this stream: if since is no longer in it (older
  -- than the first entry kept), entries after it may have been trimmed too.
  if #first == 0 or id_lt(since, first[1][1]) then return {0} end
  -- A since newer than anything this stream issued was seen in another (or a lost)
  -- stream: nothing can be said about what followed it.
  if id_lt(last_id(keys[1]), since) then return {0} end
  local out = {}
  local lower = '(' .. since
  while true do
    local chunk = redis.call('XRANGE', keys[1], lower, '+', 'COUNT', 500)
    if #chunk == 0 then return {1, out, last_id(keys[1])} end
    for _, e in ipairs(chunk) do
      local f = e[2]
      local keep = true
      local from, to = nil, nil
      for i = 1, #f, 2 do
        if f[i] == 'f' then from = f[i + 1] elseif f[i] == 'to' then to = f[i + 1] end
      end
      if to ~= nil and from ~= user and to ~= user then keep = false end
      if keep then
        out[#out + 1] = e
        if #out > limit then return {0} end
      end
      lower = '(' .. e[1]
    end
  end
end

-- Trim the stream to about ARGV[1] entries, never dropping one the flusher group has
-- not acknowledged. KEYS: stream. ARGV: keep, group. Returns entries removed.
local function trim(keys, args)
  local keep = tonumber(args[1])
  if redis.call('XLEN', keys[1]) <= keep then return 0 end
  local groups = redis.call('XINFO', 'GROUPS', keys[1])
  local floor = nil
  for _, g in ipairs(groups) do
    local name, pending, lag, last = nil, 0, nil, nil
    for i = 1, #g, 2 do
      if g[i] == 'name' then name = g[i + 1]
      elseif g[i] == 'pending' then pending = tonumber(g[i + 1])
      elseif g[i] == 'lag' then lag = g[i + 1]
      elseif g[i] == 'last-delivered-id' then last = g[i + 1] end
    end
    if name == args[2] then
      if pending > 0 then
        local p = redis.call('XPENDING', keys[1], name)
        floor = p[2]
      else
        local ms, seq = string.match(last, '(%d+)-(%d+)')
        floor = ms .. '-' .. (tonumber(seq) + 1)
      end
    end
  end
  if floor == nil then return 0 end  -- no flusher group yet: keep everything
  -- Keep the newest `keep` entries: the oldest of those bounds the cut too.
  local tail = redis.call('XREVRANGE', keys[1], '+', '-', 'COUNT', keep)
  local keep_from = tail[#tail][1]
  if id_lt(keep_from, floor) then floor = keep_from end
  return redis.call('XTRIM', keys[1], 'MINID', floor)
end

-- Close out a node that died without a goodbye: its open sessions go to the session
-- stream with the reason given, its presence is removed, and users it alone had are
-- announced as gone. KEYS: open-sessions hash, heartbeat key, sessions stream, nodes hash.
-- ARGV: node id, reason, fallback last-alive ms, key prefix, reaping node id.
-- Returns {users now online nowhere, sessions closed out}; {{}, -1} when the node is alive.
local function reap(keys, args)
  if redis.call('EXISTS', keys[2]) == 1 then return {{}, -1} end
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
  for _, u in ipairs(gone) do
    publish(prefix, {k = 'leave', n = reaper, u = u, ts = now, r = args[2]})
  end
  return {gone, closed}
end

redis.register_function('chathub_accept', accept)
redis.register_function{function_name = 'chathub_history', callback = history, flags = {'no-writes'}}
redis.register_function{function_name = 'chathub_recover', callback = recover, flags = {'no-writes'}}
redis.register_function('chathub_trim', trim)
redis.register_function('chathub_reap', reap)
redis.register_function('chathub_connect', connect)
redis.register_function('chathub_disconnect', disconnect)
redis.register_function{function_name = 'chathub_users', callback = users, flags = {'no-writes'}}
redis.register_function('chathub_resync', resync)
