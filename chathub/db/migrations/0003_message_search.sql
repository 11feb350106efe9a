-- Full-text search of the message history (chathub search; docs/moderation.md).
-- An expression index, not a stored column: the flusher's COPY-then-INSERT path
-- ("INSERT INTO messages SELECT * FROM a copy of its columns") is left exactly as it
-- was, and a generated column would be refused there. The 'simple' configuration
-- lower-cases words and stems nothing, so it works alike for every language people
-- chat in; queries must use the same expression to use this index.
CREATE INDEX IF NOT EXISTS messages_text_search_idx
    ON messages USING gin (to_tsvector('simple'::regconfig, text));
