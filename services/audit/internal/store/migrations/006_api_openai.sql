-- The OpenAI-compatible API (POST /v1/chat/completions) records its conversations as api
-- 'openai'. The check is replaced on the partitioned table, which replaces it on every
-- partition.

ALTER TABLE conversations DROP CONSTRAINT conversations_api_check;
ALTER TABLE conversations ADD CONSTRAINT conversations_api_check
    CHECK (api IN ('alpha1', 'alpha2', 'native', 'openai'));

---- create above / drop below ----

ALTER TABLE conversations DROP CONSTRAINT conversations_api_check;
ALTER TABLE conversations ADD CONSTRAINT conversations_api_check
    CHECK (api IN ('alpha1', 'alpha2', 'native'));
