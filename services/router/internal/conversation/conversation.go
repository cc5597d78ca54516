// Package conversation runs one conversation through the constellation: input scrubbing,
// the response cache, a provider worker, output scrubbing and the audit log. It knows
// nothing of the APIs in front of it (Dapr alpha1/alpha2, native) or of the transports
// behind it; both sides meet it through the types and interfaces declared here.
package conversation

import (
	"context"
	"errors"
	"fmt"
	"time"

	auditv1 "github.com/parleyhq/parley/gen/pb/parley/audit/v1"
	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/libs/seal"
	"github.com/parleyhq/parley/services/router/internal/tenant"
)

// DefaultTenant is the tenant of a request whose context names no caller (package
// tenant): every caller's when no API keys are configured.
const DefaultTenant = tenant.Default

// Finding is one PII entity found by the scrubber.
type Finding struct {
	Entity     string
	Start, End int
}

// Scrubbed is the scrubber's answer for one text.
type Scrubbed struct {
	Text     string
	Findings []Finding
}

// ScrubMode is how the scrubber writes what it finds.
type ScrubMode int

const (
	// ScrubReplace writes the entity's placeholder, e.g. <EMAIL_ADDRESS> (Dapr's output).
	ScrubReplace ScrubMode = iota
	// ScrubTokenize writes numbered placeholders, e.g. <EMAIL_ADDRESS_1>, and returns the
	// mapping back to the original values.
	ScrubTokenize
)

// TextFormat is how the scrubber reads a text.
type TextFormat int

const (
	// FormatText is free text.
	FormatText TextFormat = iota
	// FormatJSON is a JSON document (tool-call arguments, JSON tool results): string values
	// are scrubbed and the output stays valid JSON. Invalid JSON is scrubbed as text.
	FormatJSON
)

// Token is one entry of a tokenize-mode mapping. Value is an original value: it lives in
// memory for one request and is never logged, cached or audited.
type Token struct {
	Token, Entity, Value string
}

// ScrubCall is one call to the scrubber.
type ScrubCall struct {
	Texts []string
	// Formats is parallel to Texts; missing entries are FormatText.
	Formats []TextFormat
	Mode    ScrubMode
	// Tokens (ScrubTokenize only) continues an earlier call's mapping.
	Tokens []Token
}

// ScrubOutcome is the scrubber's answer: one result per text, in order, and in tokenize
// mode the call's whole mapping.
type ScrubOutcome struct {
	Results []Scrubbed
	Tokens  []Token
}

// Scrubber replaces PII in texts.
type Scrubber interface {
	Scrub(ctx context.Context, call ScrubCall) (ScrubOutcome, error)
}

// StreamScrubber is a Scrubber that scrubs a text arriving in pieces (the scrubber's
// ScrubStream): the pieces it returns, concatenated, are what Scrub returns for the whole
// text, and an entity split across pieces is still found.
type StreamScrubber interface {
	ScrubStream(ctx context.Context, mode ScrubMode, tokens []Token) (ScrubStream, error)
}

// ScrubStream is one text being scrubbed. Send and CloseSend are called from one
// goroutine, Recv from another.
type ScrubStream interface {
	// Send adds the next piece of the text.
	Send(text string) error
	// CloseSend ends the text: what was held back comes out, then Recv returns io.EOF.
	CloseSend() error
	// Recv returns the next piece of output that is safe to release, with its findings;
	// io.EOF after the last.
	Recv() (Scrubbed, error)
	// Close ends the stream early; safe after the end.
	Close() error
}

// Cache is the shared response cache, with single flight across routers: Lookup
// answers with the entry, or a lease (the caller asks the provider and then Puts or
// Releases), or word that another caller holds the lease (the caller Waits for its
// value). docs/cache.md describes the protocol.
type Cache interface {
	// Lookup finds id; leaseTTL is how long a lease granted now may last.
	Lookup(ctx context.Context, id CacheID, leaseTTL time.Duration) (CacheLookup, error)
	// Wait waits at most maxWait for the lease holder's value; found is false when the
	// lease ended without one.
	Wait(ctx context.Context, id CacheID, maxWait time.Duration) (value []byte, found bool, err error)
	// Put stores value for ttl and ends lease, if non-zero.
	Put(ctx context.Context, id CacheID, value []byte, ttl time.Duration, lease uint64) error
	// Release ends lease without a value.
	Release(ctx context.Context, id CacheID, lease uint64) error
}

// CacheID names a cache entry: the request's hash (CacheKey) and the tenant and
// component it belongs to, by which entries can be purged.
type CacheID struct {
	Tenant    string
	Component string
	Hash      string
}

// CacheLookup is the answer of Cache.Lookup.
type CacheLookup struct {
	// Found and Value: the entry exists.
	Found bool
	Value []byte
	// Lease, when non-zero, is the caller's: it must Put or Release.
	Lease uint64
	// Busy means another caller holds the lease, for LeaseRemaining at most.
	Busy           bool
	LeaseRemaining time.Duration
}

// Dispatcher sends a provider request to a worker of the request's component.
type Dispatcher interface {
	Dispatch(ctx context.Context, req *providerv1.Request) (*Dispatched, error)
}

// StreamDispatcher is a Dispatcher that can stream: DispatchStream calls onChunk with each
// chunk of the answer, in order, and returns the whole answer assembled (Assembly). It
// tries another worker only before the first chunk was given to onChunk; a failure after
// it is returned as is. An error from onChunk cancels the worker's call and is returned.
type StreamDispatcher interface {
	DispatchStream(ctx context.Context, req *providerv1.Request, onChunk func(*providerv1.Chunk) error) (*Dispatched, error)
}

// Dispatched is a worker's answer and how it was obtained.
type Dispatched struct {
	Response *providerv1.Response
	// Attempts is the number of provider calls made: the worker's retries plus one for
	// every worker that went silent.
	Attempts int
}

// AuditLog records a conversation durably before the caller gets its answer.
type AuditLog interface {
	Record(ctx context.Context, ev *auditv1.ConversationEvent) error
	// MaxEventBytes is the largest event the log takes (the NATS server's max_payload,
	// less headers); 0 when unknown.
	MaxEventBytes() int
}

// AuditSealer seals an audit copy to the audit service's public key (a *seal.Sealer):
// only the audit service can open it. aad binds the box to its event (the request id).
type AuditSealer interface {
	Seal(msg, aad []byte) (seal.Box, error)
}

// Component is what the router knows of a configured component.
type Component struct {
	Name string
	Type string
	// Version is the component file's spec.version ("", "v0" or "v1"), as Dapr lists it.
	Version  string
	Model    string
	CacheTTL time.Duration
	// Fallbacks are other components tried in order when this one cannot answer (no
	// worker, worker lost, provider unavailable or circuit open, deadline on the attempt).
	Fallbacks []string
}

// Components resolves component names.
type Components interface {
	Lookup(name string) (Component, bool)
}

// Request is one conversation turn, already validated and translated by an API adapter.
type Request struct {
	API auditv1.Api
	// Provider is the request the worker will get; its texts are scrubbed in place where
	// ScrubInput says so.
	Provider *providerv1.Request
	// ScrubInput has one flag per message of Provider.Messages.
	ScrubInput []bool
	// ScrubOutput scrubs the content of every choice.
	ScrubOutput bool
	// ScrubToolArguments also scrubs string values in tool-call arguments of the output.
	ScrubToolArguments bool
	// Tokenize scrubs in tokenize mode: the provider sees numbered placeholders and the
	// caller gets the answer with the values of its own input put back.
	Tokenize bool
	// BypassCache neither reads nor writes the cache.
	BypassCache bool
	// ContextID is echoed back and recorded.
	ContextID string
	// ErrorCode names a failure in the audit log in the API's own terms (the code its caller
	// gets); the adapter that made the Request sets it. Nil records the failure's Kind.
	ErrorCode func(error) string
}

// Result is the answer to a Request.
type Result struct {
	RequestID string
	Response  *providerv1.Response
	CacheHit  bool
	// ProviderTime is the time the provider took to answer this request, as the worker
	// measured it (every attempt under the resiliency policy); 0 for a cache hit.
	ProviderTime time.Duration
	// TimeToFirstToken is, for a streamed conversation (ConverseStream), the time from
	// the conversation's start to the first delta sent to the caller; 0 for Converse, or a
	// stream that sent no delta.
	TimeToFirstToken time.Duration
}

// Kind says what kind of failure a Converse error is. The API adapters map kinds, with the
// details the errors carry, to their own error codes and messages; this package knows no
// API's codes.
type Kind int

const (
	// KindInternal is any other failure.
	KindInternal Kind = iota
	// KindCanceled means the caller went away (context.Canceled).
	KindCanceled
	// KindDeadlineExceeded means the request's deadline passed (context.DeadlineExceeded).
	KindDeadlineExceeded
	// KindComponentNotFound is ErrComponentNotFound.
	KindComponentNotFound
	// KindNoWorker is ErrNoWorker.
	KindNoWorker
	// KindWorkerLost is ErrWorkerLost.
	KindWorkerLost
	// KindProvider is a *ProviderError: the worker's code and message are its details.
	KindProvider
	// KindScrub is a *ScrubError.
	KindScrub
	// KindAudit is an *AuditError.
	KindAudit
	// KindInvalidRequest is an *InvalidRequestError: the request breaks a limit.
	KindInvalidRequest
)

var kindNames = [...]string{
	KindInternal: "internal", KindCanceled: "canceled", KindDeadlineExceeded: "deadline_exceeded",
	KindComponentNotFound: "component_not_found", KindNoWorker: "no_worker", KindWorkerLost: "worker_lost",
	KindProvider: "provider", KindScrub: "scrub", KindAudit: "audit", KindInvalidRequest: "invalid_request",
}

// String names the kind in lower snake case.
func (k Kind) String() string {
	if k < 0 || int(k) >= len(kindNames) {
		return fmt.Sprintf("kind(%d)", int(k))
	}
	return kindNames[k]
}

// KindOf classifies an error returned by Converse. The caller's cancellation wins over
// what it interrupted; a provider error is KindProvider whatever its code.
func KindOf(err error) Kind {
	var (
		pe *ProviderError
		se *ScrubError
		ae *AuditError
		ie *InvalidRequestError
	)
	switch {
	// The audit publish runs on its own deadlines, never the caller's (AuditPublisher.Record
	// drops the caller's cancellation): its timeout is the audit stream's failure, not the
	// caller's deadline.
	case errors.As(err, &ae):
		return KindAudit
	case errors.Is(err, context.Canceled):
		return KindCanceled
	case errors.Is(err, context.DeadlineExceeded):
		return KindDeadlineExceeded
	case errors.Is(err, ErrComponentNotFound):
		return KindComponentNotFound
	case errors.Is(err, ErrNoWorker):
		return KindNoWorker
	case errors.Is(err, ErrWorkerLost):
		return KindWorkerLost
	case errors.As(err, &pe):
		return KindProvider
	case errors.As(err, &se):
		return KindScrub
	case errors.As(err, &ie):
		return KindInvalidRequest
	default:
		return KindInternal
	}
}

// Domain errors, told apart by KindOf.
var (
	// ErrComponentNotFound means no component of that name is configured.
	ErrComponentNotFound = errors.New("component not found")
	// ErrNoWorker means no worker serves the component.
	ErrNoWorker = errors.New("no worker serves the component")
	// ErrWorkerLost means the worker stopped answering and no retry succeeded.
	ErrWorkerLost = errors.New("worker stopped responding")
)

// ProviderError is a failure reported by a worker.
type ProviderError struct {
	Code    providerv1.ErrorCode
	Message string
	// RetryAfter is how long the provider asked callers to wait before another try
	// (its Retry-After hint, passed on by the worker); 0 when it gave none.
	RetryAfter time.Duration
}

func (e *ProviderError) Error() string { return e.Message }

// ScrubError means scrubbing that the caller asked for could not be done; the request
// is not sent anywhere.
type ScrubError struct{ Err error }

func (e *ScrubError) Error() string { return fmt.Sprintf("scrub pii: %v", e.Err) }
func (e *ScrubError) Unwrap() error { return e.Err }

// AuditError means the audit event could not be stored while AUDIT_MODE=required.
type AuditError struct{ Err error }

func (e *AuditError) Error() string { return fmt.Sprintf("record audit event: %v", e.Err) }
func (e *AuditError) Unwrap() error { return e.Err }
