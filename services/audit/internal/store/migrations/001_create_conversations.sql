-- One row per conversation, from parley.audit.v1.ConversationEvent.
--
-- The key includes created_at, which the router stamps and carries in the event, so the table
-- can later become PARTITION BY RANGE (created_at) without changing the key: PostgreSQL
-- requires every partition-key column in a partitioned table's unique constraints, and a
-- producer-set timestamp keeps redeliveries conflicting with the original row.
CREATE TABLE conversations (
    request_id          uuid        NOT NULL,
    created_at          timestamptz NOT NULL,
    tenant              text        NOT NULL CHECK (tenant <> ''),
    api                 text        NOT NULL CHECK (api IN ('alpha1', 'alpha2', 'native')),
    component           text        NOT NULL DEFAULT '',
    provider            text        NOT NULL DEFAULT '',
    model               text        NOT NULL DEFAULT '',
    context_id          text        NOT NULL DEFAULT '',
    -- The scrubbed request; null only if the router had none to record.
    request             jsonb,
    -- The scrubbed response; null on error.
    response            jsonb,
    finish_reason       text        NOT NULL DEFAULT '',
    status              text        NOT NULL CHECK (status IN ('ok', 'error')),
    error_code          text        NOT NULL DEFAULT '',
    error_message       text        NOT NULL DEFAULT '',
    prompt_tokens       bigint      NOT NULL DEFAULT 0,
    completion_tokens   bigint      NOT NULL DEFAULT 0,
    total_tokens        bigint      NOT NULL DEFAULT 0,
    cached_tokens       bigint      NOT NULL DEFAULT 0,
    reasoning_tokens    bigint      NOT NULL DEFAULT 0,
    cache_hit           boolean     NOT NULL DEFAULT false,
    -- Findings per entity type, e.g. {"EMAIL": 2}.
    pii_findings        jsonb       NOT NULL DEFAULT '{}',
    attempts            integer     NOT NULL DEFAULT 0,
    fallbacks           text[]      NOT NULL DEFAULT '{}',
    worker_id           text        NOT NULL DEFAULT '',
    latency_us          bigint      NOT NULL DEFAULT 0,
    provider_latency_us bigint      NOT NULL DEFAULT 0,
    PRIMARY KEY (request_id, created_at)
);

-- Listing, newest first, with request_id as the keyset tie-breaker.
CREATE INDEX conversations_tenant_created_idx
    ON conversations (tenant, created_at DESC, request_id DESC);
CREATE INDEX conversations_tenant_component_idx
    ON conversations (tenant, component, created_at DESC, request_id DESC);
CREATE INDEX conversations_tenant_context_idx
    ON conversations (tenant, context_id, created_at DESC, request_id DESC);

---- create above / drop below ----

DROP TABLE conversations;
