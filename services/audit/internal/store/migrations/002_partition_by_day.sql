-- Day partitions, text search and the daily usage roll-up.
--
-- conversations becomes PARTITION BY RANGE (created_at) with one partition per UTC day,
-- named conversations_pYYYYMMDD. The key (request_id, created_at) already holds the
-- partition key, as PostgreSQL requires; created_at is stamped by the router and carried in
-- the event, so a redelivered event lands in the same partition and conflicts with its row.
-- The audit service creates partitions ahead of time and on demand (conversations_ensure_
-- partition), and drops those older than AUDIT_RETENTION.
--
-- Rows of a database created before this migration are moved into the new table, so an
-- existing database need not be recreated; on a large one, the move takes as long as a
-- copy of the table.

ALTER TABLE conversations RENAME TO conversations_v1;
ALTER TABLE conversations_v1 RENAME CONSTRAINT conversations_pkey TO conversations_v1_pkey;
DROP INDEX conversations_tenant_created_idx;
DROP INDEX conversations_tenant_component_idx;
DROP INDEX conversations_tenant_context_idx;

CREATE TABLE conversations (
    request_id          uuid        NOT NULL,
    created_at          timestamptz NOT NULL,
    tenant              text        NOT NULL CONSTRAINT conversations_tenant_check CHECK (tenant <> ''),
    api                 text        NOT NULL CONSTRAINT conversations_api_check
                                    CHECK (api IN ('alpha1', 'alpha2', 'native')),
    component           text        NOT NULL DEFAULT '',
    provider            text        NOT NULL DEFAULT '',
    model               text        NOT NULL DEFAULT '',
    context_id          text        NOT NULL DEFAULT '',
    -- The scrubbed request; null only if the router had none to record.
    request             jsonb,
    -- The scrubbed response; null on error.
    response            jsonb,
    finish_reason       text        NOT NULL DEFAULT '',
    status              text        NOT NULL CONSTRAINT conversations_status_check
                                    CHECK (status IN ('ok', 'error')),
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
    -- Hashes of the words of the scrubbed text, for text search (see below).
    search_hashes       bigint[]    NOT NULL DEFAULT '{}',
    PRIMARY KEY (request_id, created_at)
) PARTITION BY RANGE (created_at);

-- Listing, newest first, with request_id as the keyset tie-breaker; every index leads with
-- the tenant, since every query is confined to one.
CREATE INDEX conversations_tenant_created_idx
    ON conversations (tenant, created_at DESC, request_id DESC);
CREATE INDEX conversations_tenant_component_idx
    ON conversations (tenant, component, created_at DESC, request_id DESC);
CREATE INDEX conversations_tenant_model_idx
    ON conversations (tenant, model, created_at DESC, request_id DESC);
CREATE INDEX conversations_tenant_context_idx
    ON conversations (tenant, context_id, created_at DESC, request_id DESC) WHERE context_id <> '';
-- Errors are few; partial indexes find them, by status or by code, without walking the
-- rows that succeeded.
CREATE INDEX conversations_tenant_errors_idx
    ON conversations (tenant, created_at DESC, request_id DESC) WHERE status = 'error';
CREATE INDEX conversations_tenant_error_code_idx
    ON conversations (tenant, error_code, created_at DESC, request_id DESC) WHERE error_code <> '';

-- Text search: search_hashes holds the 64-bit FNV-1a hashes of the distinct lower-cased
-- words (runs of letters and digits) of the string values of the scrubbed request and
-- response, computed by the audit service at ingest; "search_hashes @> hashes of the
-- query's words" finds the rows with every word. Its GIN index is not declared here, on
-- the parent, which would maintain it on every insert: the audit service builds it on each
-- day's partition (conversations_pYYYYMMDD_search_idx) once the day is over, or when the
-- partition is created if AUDIT_SEARCH_INDEX=live.

-- Rows of several kilobytes are the rule (prompts, answers); lz4 compresses them for TOAST
-- at a fraction of pglz's cost. A server built without lz4 keeps pglz.
DO $$
BEGIN
    ALTER TABLE conversations
        ALTER COLUMN request SET COMPRESSION lz4,
        ALTER COLUMN response SET COMPRESSION lz4,
        ALTER COLUMN search_hashes SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'lz4 not supported by this server; conversations keeps the default compression';
END
$$;

-- conversations_ensure_partition creates the partition of day (a UTC day) unless it exists
-- and reports whether it did; with search_index, it also creates the partition's search
-- index. An advisory lock serialises concurrent callers (replicas, the maintenance job),
-- which would otherwise race on the catalog. The checks read pg_class with a fresh
-- snapshot: to_regclass would consult this session's catalog cache, which may not yet
-- know of a partition that another session created while this one waited for the lock.
CREATE FUNCTION conversations_ensure_partition(day date, search_index boolean DEFAULT false) RETURNS boolean
    LANGUAGE plpgsql AS $$
DECLARE
    part text := 'conversations_p' || to_char(day, 'YYYYMMDD');
BEGIN
    IF EXISTS (SELECT 1 FROM pg_class WHERE relname = part AND relnamespace = current_schema()::regnamespace) THEN
        RETURN false;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('parley.audit.partitions'));
    IF EXISTS (SELECT 1 FROM pg_class WHERE relname = part AND relnamespace = current_schema()::regnamespace) THEN
        RETURN false;
    END IF;
    EXECUTE format('CREATE TABLE %I PARTITION OF conversations FOR VALUES FROM (%L) TO (%L)',
        part, day::timestamp AT TIME ZONE 'UTC', (day + 1)::timestamp AT TIME ZONE 'UTC');
    -- The planner estimates how many rows hold a word from the most common words that
    -- ANALYZE lists; with the default list a rare word looks common, and a text search
    -- walks the whole log newest first instead of using the search index.
    EXECUTE format('ALTER TABLE %I ALTER COLUMN search_hashes SET STATISTICS 1000', part);
    IF search_index THEN
        EXECUTE format('CREATE INDEX %I ON %I USING gin (search_hashes)', part || '_search_idx', part);
    END IF;
    RETURN true;
END
$$;

-- Move the rows of a database migrated before partitioning.
DO $$
DECLARE
    d date;
BEGIN
    FOR d IN SELECT DISTINCT (created_at AT TIME ZONE 'UTC')::date FROM conversations_v1 LOOP
        PERFORM conversations_ensure_partition(d);
    END LOOP;
END
$$;
-- Their search_hashes stay empty: text search does not find conversations recorded
-- before this migration.
INSERT INTO conversations SELECT * FROM conversations_v1;

-- The latency histogram of the roll-up: 100 buckets, four per doubling, which keeps a
-- percentile read from it within about 10% of the true value. Bucket 0 holds latencies
-- under 100 µs; bucket i (1 to 99) those from the i-th bound below (round(100·2^((i-1)/4))
-- µs) up to the next; the last, everything from about 2,373 s. The bounds are integers so
-- that the audit service (which builds the histograms at ingest) and this function agree
-- to the microsecond.
CREATE FUNCTION audit_latency_bucket(us bigint) RETURNS integer
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN width_bucket(us, '{
        100,119,141,168,200,238,283,336,400,476,566,673,800,951,1131,1345,1600,1903,2263,
        2691,3200,3805,4525,5382,6400,7611,9051,10763,12800,15222,18102,21527,25600,30444,
        36204,43054,51200,60887,72408,86108,102400,121775,144815,172216,204800,243550,
        289631,344431,409600,487099,579262,688862,819200,974198,1158524,1377725,1638400,
        1948397,2317048,2755449,3276800,3896794,4634095,5510899,6553600,7793588,9268190,
        11021797,13107200,15587175,18536380,22043595,26214400,31174351,37072760,44087190,
        52428800,62348702,74145520,88174380,104857600,124697404,148291040,176348760,
        209715200,249394808,296582080,352697520,419430400,498789616,593164160,705395040,
        838860800,997579232,1186328320,1410790079,1677721600,1995158464,2372656641}'::bigint[]);

-- audit_hist_of(buckets, counts) is the histogram with counts[i] latencies in bucket
-- buckets[i]; it builds a group's histogram from its counts per bucket.
CREATE FUNCTION audit_hist_of(buckets integer[], counts bigint[]) RETURNS bigint[]
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN ARRAY(
        SELECT coalesce(sum(t.n), 0)::bigint
        FROM generate_series(0, 99) AS i
        LEFT JOIN unnest(buckets, counts) AS t (b, n) ON t.b = i
        GROUP BY i
        ORDER BY i);

-- audit_hist_merge adds two histograms element by element.
CREATE FUNCTION audit_hist_merge(a bigint[], b bigint[]) RETURNS bigint[]
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN ARRAY(SELECT coalesce(x, 0) + coalesce(y, 0) FROM unnest(a, b) WITH ORDINALITY AS t (x, y, i) ORDER BY i);

-- audit_hist_sum(latency_hist) merges the histograms of a group of roll-up rows.
CREATE AGGREGATE audit_hist_sum(bigint[]) (
    SFUNC = audit_hist_merge,
    STYPE = bigint[]
);

-- usage_daily holds counters per tenant, UTC day, component and model, upserted in the
-- same transaction as the rows they count (only rows actually inserted, so redeliveries
-- are not counted twice). Usage statistics by day read it instead of the log, and it
-- outlives the log's retention (AUDIT_USAGE_RETENTION).
CREATE TABLE usage_daily (
    tenant            text    NOT NULL,
    day               date    NOT NULL,
    component         text    NOT NULL,
    model             text    NOT NULL,
    requests          bigint  NOT NULL DEFAULT 0,
    errors            bigint  NOT NULL DEFAULT 0,
    cache_hits        bigint  NOT NULL DEFAULT 0,
    prompt_tokens     bigint  NOT NULL DEFAULT 0,
    completion_tokens bigint  NOT NULL DEFAULT 0,
    total_tokens      bigint  NOT NULL DEFAULT 0,
    cached_tokens     bigint  NOT NULL DEFAULT 0,
    reasoning_tokens  bigint  NOT NULL DEFAULT 0,
    latency_sum_us    bigint  NOT NULL DEFAULT 0,
    latency_hist      bigint[] NOT NULL,
    PRIMARY KEY (tenant, day, component, model)
);

INSERT INTO usage_daily (tenant, day, component, model, requests, errors, cache_hits,
        prompt_tokens, completion_tokens, total_tokens, cached_tokens, reasoning_tokens,
        latency_sum_us, latency_hist)
    SELECT tenant, day, component, model, sum(n), sum(errors), sum(cache_hits),
        sum(prompt_tokens), sum(completion_tokens), sum(total_tokens), sum(cached_tokens),
        sum(reasoning_tokens), sum(latency_us), audit_hist_of(array_agg(b), array_agg(n))
    FROM (
        SELECT tenant, (created_at AT TIME ZONE 'UTC')::date AS day, component, model,
            audit_latency_bucket(latency_us) AS b, count(*) AS n,
            count(*) FILTER (WHERE status = 'error') AS errors,
            count(*) FILTER (WHERE cache_hit) AS cache_hits,
            sum(prompt_tokens) AS prompt_tokens, sum(completion_tokens) AS completion_tokens,
            sum(total_tokens) AS total_tokens, sum(cached_tokens) AS cached_tokens,
            sum(reasoning_tokens) AS reasoning_tokens, sum(latency_us) AS latency_us
        FROM conversations_v1
        GROUP BY 1, 2, 3, 4, 5
    ) AS g
    GROUP BY 1, 2, 3, 4;

DROP TABLE conversations_v1;

---- create above / drop below ----

DROP TABLE usage_daily;
DROP AGGREGATE audit_hist_sum(bigint[]);
DROP FUNCTION audit_hist_merge(bigint[], bigint[]);
DROP FUNCTION audit_hist_of(integer[], bigint[]);
DROP FUNCTION audit_latency_bucket(bigint);
ALTER TABLE conversations RENAME TO conversations_v2;
ALTER TABLE conversations_v2 RENAME CONSTRAINT conversations_pkey TO conversations_v2_pkey;
CREATE TABLE conversations (LIKE conversations_v2 INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
ALTER TABLE conversations DROP COLUMN search_hashes;
ALTER TABLE conversations ADD PRIMARY KEY (request_id, created_at);
INSERT INTO conversations
    SELECT request_id, created_at, tenant, api, component, provider, model, context_id,
        request, response, finish_reason, status, error_code, error_message,
        prompt_tokens, completion_tokens, total_tokens, cached_tokens, reasoning_tokens,
        cache_hit, pii_findings, attempts, fallbacks, worker_id, latency_us, provider_latency_us
    FROM conversations_v2;
DROP TABLE conversations_v2;
DROP FUNCTION conversations_ensure_partition(date, boolean);
CREATE INDEX conversations_tenant_created_idx
    ON conversations (tenant, created_at DESC, request_id DESC);
CREATE INDEX conversations_tenant_component_idx
    ON conversations (tenant, component, created_at DESC, request_id DESC);
CREATE INDEX conversations_tenant_context_idx
    ON conversations (tenant, context_id, created_at DESC, request_id DESC);
