-- Channels (protocol v2): every public message belongs to a channel; whispers to none.
-- Messages written before channels were in the one room, which is now 'general'.
ALTER TABLE messages ADD COLUMN channel text;
UPDATE messages SET channel = 'general' WHERE recipient IS NULL;
ALTER TABLE messages ADD CONSTRAINT messages_channel_public
    CHECK ((recipient IS NULL) = (channel IS NOT NULL));

-- Paging a channel back by id (history older than the Valkey stream reaches).
CREATE INDEX messages_channel_idx ON messages (channel, id_ms DESC, id_seq DESC)
    WHERE channel IS NOT NULL;
DROP INDEX messages_public_idx;

-- Channels as they were created (on first subscribe, or by `chathub channel create`).
CREATE TABLE channels (
    name       text PRIMARY KEY,
    private    boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    created_by text
);
INSERT INTO channels (name, private, created_by) VALUES ('general', false, NULL)
    ON CONFLICT (name) DO NOTHING;
