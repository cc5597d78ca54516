-- The API key of each conversation: the id of the key the caller presented (never key
-- material), empty for conversations without API keys. Additive: existing rows get ''.
-- Usage statistics by key are computed from these rows; the daily roll-up is unchanged.

ALTER TABLE conversations ADD COLUMN key_id text NOT NULL DEFAULT '';

---- create above / drop below ----

ALTER TABLE conversations DROP COLUMN key_id;
