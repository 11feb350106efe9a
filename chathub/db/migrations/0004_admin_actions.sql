-- The audit trail: one row per operator action on the admin socket or by signal
-- (kick, limits set/reset, reload, ...). Written behind the hub through a Valkey
-- stream (chathub/db/audit.py); the id is made when the action happens, so a row
-- written twice after a retry is kept once.
CREATE TABLE IF NOT EXISTS admin_actions (
    id        text PRIMARY KEY,
    action    text NOT NULL,
    target    text,
    arguments jsonb NOT NULL DEFAULT '{}'::jsonb,
    at        timestamptz NOT NULL,
    by_uid    integer,                           -- Unix uid of the admin socket's peer
    by_user   text                               -- its user name (or how it was asked)
);
CREATE INDEX IF NOT EXISTS admin_actions_at_idx ON admin_actions (at DESC);
