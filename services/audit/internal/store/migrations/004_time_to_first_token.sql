-- Time to first token of streamed conversations (0: not streamed). A constant default
-- adds the column without rewriting the partitions.
ALTER TABLE conversations ADD COLUMN time_to_first_token_us bigint NOT NULL DEFAULT 0;

---- create above / drop below ----

ALTER TABLE conversations DROP COLUMN time_to_first_token_us;
