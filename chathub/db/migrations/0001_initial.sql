-- Sessions: one row per WebSocket connection, written when it ends.
CREATE TABLE sessions (
    id                text PRIMARY KEY,          -- the "session" sent in welcome
    user_name         text NOT NULL,
    remote_addr       text,
    user_agent        text,
    node_id           text NOT NULL,
    connected_at      timestamptz NOT NULL,
    disconnected_at   timestamptz,
    duration_ms       bigint,
    chats_sent        integer NOT NULL DEFAULT 0,
    whispers_sent     integer NOT NULL DEFAULT 0,
    whispers_received integer NOT NULL DEFAULT 0,
    frames_received   integer NOT NULL DEFAULT 0,
    bytes_in          bigint NOT NULL DEFAULT 0,
    bytes_out         bigint NOT NULL DEFAULT 0,
    rate_limit_hits   integer NOT NULL DEFAULT 0,
    close_code        integer,
    close_reason      text
);
CREATE INDEX sessions_user_idx ON sessions (user_name, connected_at DESC);
CREATE INDEX sessions_node_open_idx ON sessions (node_id) WHERE disconnected_at IS NULL;

-- Messages: every accepted chat and whisper, flushed from the Valkey stream.
-- The id is the stream id "<ms>-<seq>"; id_ms/id_seq order it numerically.
CREATE TABLE messages (
    id        text PRIMARY KEY,
    id_ms     bigint NOT NULL,
    id_seq    bigint NOT NULL,
    sender    text NOT NULL,
    recipient text,                              -- NULL for public chat
    text      text NOT NULL,
    ts        timestamptz NOT NULL
);
CREATE INDEX messages_public_idx ON messages (id_ms DESC, id_seq DESC) WHERE recipient IS NULL;
CREATE INDEX messages_whisper_idx ON messages (recipient, id_ms, id_seq) WHERE recipient IS NOT NULL;
CREATE INDEX messages_sender_whisper_idx ON messages (sender, id_ms, id_seq) WHERE recipient IS NOT NULL;
