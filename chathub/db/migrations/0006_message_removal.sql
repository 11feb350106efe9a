-- Removed messages (chathub delete / purge; docs/moderation.md): the row is kept for
-- the audit trail and marked; every read (history pages, search) leaves it out.
-- A message deleted before the flusher wrote it is inserted here already marked, and
-- the flusher's insert (ON CONFLICT DO NOTHING) leaves that row as it is.
ALTER TABLE messages ADD COLUMN IF NOT EXISTS deleted_at timestamptz;
ALTER TABLE messages ADD COLUMN IF NOT EXISTS deleted_by text;  -- who deleted it

-- A purge finds a sender's messages of the last minutes or hours.
CREATE INDEX IF NOT EXISTS messages_sender_idx ON messages (sender, id_ms DESC, id_seq DESC);
