-- Bans and mutes (chathub ban / mute): the durable record. Every hub enforces them
-- from Valkey's copy, kept in memory (chathub/bans.py); the daemon copies the active
-- rows back into Valkey at start. A row is in force while lifted_at is null and
-- expires_at is null (until lifted) or in the future.
CREATE TABLE IF NOT EXISTS bans (
    id         bigserial PRIMARY KEY,
    kind       text NOT NULL DEFAULT 'ban' CHECK (kind IN ('ban', 'mute')),
    user_name  text,                             -- null for an address ban
    channel    text,                             -- null: every channel (the whole server)
    ip         cidr,                             -- an address range, for an address ban
    reason     text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz,                      -- null: until lifted
    created_by text,                             -- the Unix user of the admin socket's peer
    lifted_at  timestamptz,                      -- set by chathub unban / unmute
    CHECK ((user_name IS NULL) <> (ip IS NULL)),
    CHECK (channel IS NULL OR user_name IS NOT NULL)
);
CREATE INDEX IF NOT EXISTS bans_in_force_idx ON bans (created_at) WHERE lifted_at IS NULL;
