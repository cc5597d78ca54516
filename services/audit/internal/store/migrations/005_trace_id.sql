-- The W3C trace id of each conversation's trace (32 lowercase hex digits), or '' when the
-- router had none (tracing off and no traceparent from the caller). Adding a column with a
-- constant default rewrites nothing, on the partitioned table and on its partitions.

ALTER TABLE conversations ADD COLUMN trace_id text NOT NULL DEFAULT '';
