package store

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"
	"google.golang.org/protobuf/proto"

	auditv1 "github.com/parleyhq/parley/gen/pb/parley/audit/v1"
)

// columnList names the columns of conversations that are read back; toRow produces them in
// this order, followed by those of insertColumnList.
const columnList = "request_id, created_at, tenant, api, component, provider, model, context_id, " +
	"request, response, finish_reason, status, error_code, error_message, " +
	"prompt_tokens, completion_tokens, total_tokens, cached_tokens, reasoning_tokens, " +
	"cache_hit, pii_findings, attempts, fallbacks, worker_id, latency_us, provider_latency_us, key_id, time_to_first_token_us, trace_id"

// insertColumnList names every column toRow produces: columnList and the write-only ones.
const insertColumnList = columnList + ", search_hashes"

// ValidateEvent reports whether the store can ever store ev, as PrepareRow does but
// without converting it. Errors wrap ErrInvalidEvent: the event is a poison message, to
// be set aside alone rather than fail its batch over and over.
//
// Text PostgreSQL cannot store (NUL characters, invalid UTF-8) is not an error: the store
// replaces it with U+FFFD, so hostile input cannot keep a conversation out of the log.
func ValidateEvent(ev *auditv1.ConversationEvent) error {
	_, err := convert(ev, false)
	return err
}

func invalid(ev *auditv1.ConversationEvent, format string, args ...any) error {
	return fmt.Errorf("%w (request_id %q): %s", ErrInvalidEvent, ev.GetRequestId(), fmt.Sprintf(format, args...))
}

func apiToDB(a auditv1.Api) (string, bool) {
	switch a {
	case auditv1.Api_API_ALPHA1:
		return "alpha1", true
	case auditv1.Api_API_ALPHA2:
		return "alpha2", true
	case auditv1.Api_API_NATIVE:
		return "native", true
	case auditv1.Api_API_OPENAI:
		return "openai", true
	default:
		return "", false
	}
}

func apiFromDB(s string) auditv1.Api {
	switch s {
	case "alpha1":
		return auditv1.Api_API_ALPHA1
	case "alpha2":
		return auditv1.Api_API_ALPHA2
	case "native":
		return auditv1.Api_API_NATIVE
	case "openai":
		return auditv1.Api_API_OPENAI
	default:
		return auditv1.Api_API_UNSPECIFIED
	}
}

func statusToDB(s auditv1.Status) (string, bool) {
	switch s {
	case auditv1.Status_STATUS_OK:
		return "ok", true
	case auditv1.Status_STATUS_ERROR:
		return "error", true
	default:
		return "", false
	}
}

func statusFromDB(s string) auditv1.Status {
	switch s {
	case "ok":
		return auditv1.Status_STATUS_OK
	case "error":
		return auditv1.Status_STATUS_ERROR
	default:
		return auditv1.Status_STATUS_UNSPECIFIED
	}
}

// toRow converts ev into the values of one conversations row, in columnList order.
func toRow(ev *auditv1.ConversationEvent) ([]any, error) {
	return convert(ev, true)
}

// convert checks ev and, with search, computes the row's search hashes too; without, the
// row's last value is nil (validation only needs the checks).
func convert(ev *auditv1.ConversationEvent, search bool) ([]any, error) {
	if ev == nil {
		return nil, fmt.Errorf("%w: nil event", ErrInvalidEvent)
	}
	id, err := uuid.Parse(ev.GetRequestId())
	if err != nil {
		return nil, invalid(ev, "request_id is not a UUID")
	}
	if err := ev.GetCreatedAt().CheckValid(); err != nil {
		return nil, invalid(ev, "created_at: %v", err)
	}
	tenant := cleanText(ev.GetTenant())
	if tenant == "" {
		return nil, invalid(ev, "tenant is empty")
	}
	api, ok := apiToDB(ev.GetApi())
	if !ok {
		return nil, invalid(ev, "unknown api %v", ev.GetApi())
	}
	status, ok := statusToDB(ev.GetStatus())
	if !ok {
		return nil, invalid(ev, "unknown status %v", ev.GetStatus())
	}
	request, err := messageJSON(ev.GetRequest(), ev.GetRequestJson())
	if err != nil {
		return nil, invalid(ev, "request: %v", err)
	}
	response, err := messageJSON(ev.GetResponse(), ev.GetResponseJson())
	if err != nil {
		return nil, invalid(ev, "response: %v", err)
	}
	u := ev.GetUsage()
	tokens := [...]uint64{u.GetPromptTokens(), u.GetCompletionTokens(), u.GetTotalTokens(), u.GetCachedTokens(), u.GetReasoningTokens()}
	var signed [len(tokens)]int64
	for i, n := range tokens {
		if n > math.MaxInt64 {
			return nil, invalid(ev, "token count %d out of range", n)
		}
		signed[i] = int64(n)
	}
	pii, err := piiJSON(ev.GetPiiFindings())
	if err != nil {
		return nil, invalid(ev, "pii_findings: %v", err)
	}
	fallbacks := make([]string, len(ev.GetFallbacks()))
	for i, f := range ev.GetFallbacks() {
		fallbacks[i] = cleanText(f)
	}

	return []any{
		pgtype.UUID{Bytes: id, Valid: true},
		ev.GetCreatedAt().AsTime(),
		tenant,
		api,
		cleanText(ev.GetComponent()),
		cleanText(ev.GetProvider()),
		cleanText(ev.GetModel()),
		cleanText(ev.GetContextId()),
		request,
		response,
		cleanText(ev.GetFinishReason()),
		status,
		cleanText(ev.GetErrorCode()),
		cleanText(ev.GetErrorMessage()),
		signed[0], signed[1], signed[2], signed[3], signed[4],
		ev.GetCacheHit(),
		pii,
		ev.GetAttempts(),
		fallbacks,
		cleanText(ev.GetWorkerId()),
		ev.GetLatency().AsDuration().Microseconds(),
		ev.GetProviderLatency().AsDuration().Microseconds(),
		cleanText(ev.GetKeyId()),
		ev.GetTimeToFirstToken().AsDuration().Microseconds(),
		traceID(ev.GetTraceId()),
		hashesIf(search, request, response),
	}, nil
}

// traceID is id when it is a W3C trace id (32 lowercase hex digits, not all zero), else
// "": a malformed id is dropped rather than keep the conversation out of the log.
func traceID(id string) string {
	if len(id) != 32 || strings.Trim(id, "0") == "" {
		return ""
	}
	for i := range len(id) {
		if c := id[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return ""
		}
	}
	return id
}

// cleanText makes s storable as PostgreSQL text, which rejects NUL and invalid UTF-8.
func cleanText(s string) string {
	if utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

func piiJSON(m map[string]int64) ([]byte, error) {
	if len(m) == 0 {
		return []byte("{}"), nil
	}
	clean := make(map[string]int64, len(m))
	for k, v := range m {
		clean[cleanText(k)] += v
	}
	b, err := json.Marshal(clean)
	if err != nil {
		return nil, fmt.Errorf("marshal: %w", err)
	}
	return b, nil
}

func micros(us int64) time.Duration {
	return time.Duration(us) * time.Microsecond
}

func hashesIf(search bool, request, response []byte) []int64 {
	if !search {
		return nil
	}
	return searchHashes(request, response)
}

// messageJSON is the JSON stored for an event's request or response: the message the
// router sends, encoded here (off the conversation's path), or else the JSON of an event
// published before the router sent messages; cleaned for jsonb either way.
func messageJSON(m proto.Message, legacy []byte) ([]byte, error) {
	if m == nil || !m.ProtoReflect().IsValid() {
		return cleanJSON(legacy)
	}
	b, direct, err := marshalJSON(m)
	if err != nil {
		return nil, fmt.Errorf("encode as JSON: %w", err)
	}
	if direct {
		// Valid UTF-8 JSON of a bounded depth already: only what jsonb refuses is left.
		return cleanValidJSON(b)
	}
	return cleanJSON(b)
}
