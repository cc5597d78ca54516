package daprapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	runtimev1 "github.com/parleyhq/parley/gen/pb/dapr/proto/runtime/v1"
	"github.com/parleyhq/parley/gen/pb/dapr/proto/runtime/v1/runtimev1connect"
	"github.com/parleyhq/parley/libs/jsondepth"
	"github.com/parleyhq/parley/services/router/internal/conversation"
	"github.com/parleyhq/parley/services/router/internal/servertiming"
)

// Converser runs conversations.
type Converser interface {
	Lookup(name string) (conversation.Component, bool)
	Converse(ctx context.Context, req conversation.Request) (*conversation.Result, error)
}

// ComponentLister lists the configured components for GET /v1.0/metadata.
type ComponentLister interface {
	List() []conversation.Component
}

// CacheHeader tells HTTP callers whether the answer came from the response cache
// ("hit", "miss"); gRPC callers get it as response metadata "parley-cache".
const CacheHeader = "Parley-Cache"

// RequestIDHeader carries the audit log's request id.
const RequestIDHeader = "Parley-Request-Id"

// Options tune the Handler.
type Options struct {
	// MaxBodyBytes caps an HTTP request body.
	MaxBodyBytes int64
	// Timeout bounds a call whose client set no deadline.
	Timeout time.Duration
}

// Handler serves Dapr's conversation API over HTTP and gRPC. Every other method of the
// Dapr service answers Unimplemented (see unimplemented.go).
type Handler struct {
	runtimev1connect.UnimplementedDaprHandler

	conv       Converser
	components ComponentLister
	opts       Options
	logger     *slog.Logger
}

var _ runtimev1connect.DaprHandler = (*Handler)(nil)

// New returns a Handler.
func New(conv Converser, components ComponentLister, opts Options, logger *slog.Logger) *Handler {
	return &Handler{conv: conv, components: components, opts: opts, logger: logger}
}

// bodyEnvelopeDepth is how deep a request body's own structure nests before a JSON value
// starts (tools[].function.parameters sits at level 5).
const bodyEnvelopeDepth = 8

var (
	decodeOptions = protojson.UnmarshalOptions{DiscardUnknown: true, AllowPartial: true}
	encodeOptions = protojson.MarshalOptions{}
)

func (h *Handler) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok || h.opts.Timeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, h.opts.Timeout)
}

// converse runs what both API versions share: component lookup (NOT_FOUND comes before
// any validation, as in Dapr), the version's translation, and the call.
func (h *Handler) converse(ctx context.Context, name string, translate func() (conversation.Request, *Error)) (*conversation.Result, *Error) {
	if len(name) > conversation.MaxComponentName {
		// No component has such a name; the message and the log keep a bounded prefix.
		return nil, errNotFound(name[:conversation.MaxComponentName] + "…")
	}
	if _, ok := h.conv.Lookup(name); !ok {
		return nil, errNotFound(name)
	}
	creq, derr := translate()
	if derr != nil {
		return nil, derr
	}
	creq.ErrorCode = auditCode
	ctx, cancel := h.withTimeout(ctx)
	defer cancel()
	res, err := h.conv.Converse(ctx, creq)
	if err != nil {
		return nil, h.toDapr(ctx, name, err)
	}
	return res, nil
}

func (h *Handler) alpha1(ctx context.Context, req *runtimev1.ConversationRequest) (*runtimev1.ConversationResponse, *conversation.Result, *Error) {
	res, derr := h.converse(ctx, req.GetName(), func() (conversation.Request, *Error) { return fromAlpha1(req.GetName(), req) })
	if derr != nil {
		return nil, nil, derr
	}
	return toAlpha1(req, res), res, nil
}

func (h *Handler) alpha2(ctx context.Context, req *runtimev1.ConversationRequestAlpha2) (*runtimev1.ConversationResponseAlpha2, *conversation.Result, *Error) {
	res, derr := h.converse(ctx, req.GetName(), func() (conversation.Request, *Error) { return fromAlpha2(req.GetName(), req) })
	if derr != nil {
		return nil, nil, derr
	}
	return toAlpha2(req, res), res, nil
}

// ConverseAlpha1 is the gRPC alpha1 method.
func (h *Handler) ConverseAlpha1(ctx context.Context, req *runtimev1.ConversationRequest) (*runtimev1.ConversationResponse, error) {
	timer := servertiming.Start()
	out, res, derr := h.alpha1(ctx, req)
	if derr != nil {
		return nil, derr.connectError()
	}
	setGRPCMeta(ctx, res, timer)
	return out, nil
}

// ConverseAlpha2 is the gRPC alpha2 method.
func (h *Handler) ConverseAlpha2(ctx context.Context, req *runtimev1.ConversationRequestAlpha2) (*runtimev1.ConversationResponseAlpha2, error) {
	timer := servertiming.Start()
	out, res, derr := h.alpha2(ctx, req)
	if derr != nil {
		return nil, derr.connectError()
	}
	setGRPCMeta(ctx, res, timer)
	return out, nil
}

func setGRPCMeta(ctx context.Context, res *conversation.Result, timer servertiming.Timer) {
	if ci, ok := connect.CallInfoForHandlerContext(ctx); ok {
		ci.ResponseHeader().Set("parley-cache", cacheValue(res))
		ci.ResponseHeader().Set("parley-request-id", res.RequestID)
		// A trailer: the gateway's time is known only once the answer is ready.
		ci.ResponseTrailer().Set(servertiming.Header, timer.Value(res.ProviderTime))
	}
}

func cacheValue(res *conversation.Result) string {
	if res.CacheHit {
		return "hit"
	}
	return "miss"
}

// HTTPAlpha1 serves POST /v1.0-alpha1/conversation/{name}/converse.
func (h *Handler) HTTPAlpha1(w http.ResponseWriter, r *http.Request) {
	timer := servertiming.Start()
	req := &runtimev1.ConversationRequest{}
	if derr := h.decode(w, r, req); derr != nil {
		h.writeError(w, r, derr)
		return
	}
	req.Name = r.PathValue("name")
	out, res, derr := h.alpha1(r.Context(), req)
	if derr != nil {
		h.writeError(w, r, derr)
		return
	}
	h.writeResult(w, r, out, res, timer)
}

// HTTPAlpha2 serves POST /v1.0-alpha2/conversation/{name}/converse.
func (h *Handler) HTTPAlpha2(w http.ResponseWriter, r *http.Request) {
	timer := servertiming.Start()
	req := &runtimev1.ConversationRequestAlpha2{}
	if derr := h.decode(w, r, req); derr != nil {
		h.writeError(w, r, derr)
		return
	}
	req.Name = r.PathValue("name")
	out, res, derr := h.alpha2(r.Context(), req)
	if derr != nil {
		h.writeError(w, r, derr)
		return
	}
	h.writeResult(w, r, out, res, timer)
}

// decode reads the body as Dapr does: protojson, unknown fields ignored, an empty body
// an empty request.
func (h *Handler) decode(w http.ResponseWriter, r *http.Request, into proto.Message) *Error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.opts.MaxBodyBytes))
	if err != nil {
		return errBodyRead(err)
	}
	if len(body) == 0 {
		return nil
	}
	// A cheap linear check before the recursive decoder: no request needs JSON deeper
	// than the limit on values plus the few levels of the request's own shape. Values
	// are checked exactly once decoded (conversation.InvalidRequestError).
	if jsondepth.Exceeds(body, jsondepth.Max+bodyEnvelopeDepth) {
		return errMalformed(fmt.Errorf("JSON nested deeper than %d levels", jsondepth.Max+bodyEnvelopeDepth))
	}
	if err := decodeOptions.Unmarshal(body, into); err != nil {
		return errMalformed(err)
	}
	return nil
}

func (h *Handler) writeResult(w http.ResponseWriter, r *http.Request, out proto.Message, res *conversation.Result, timer servertiming.Timer) {
	b, err := encodeOptions.Marshal(out)
	if err != nil {
		h.writeError(w, r, &Error{http.StatusInternalServerError, connect.CodeInternal, "ERR_CONVERSATION_INVOKE", "failed encoding response"})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set(CacheHeader, cacheValue(res))
	w.Header().Set(RequestIDHeader, res.RequestID)
	w.Header().Set(servertiming.Header, timer.Value(res.ProviderTime))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

func (h *Handler) writeError(w http.ResponseWriter, r *http.Request, derr *Error) {
	h.logger.InfoContext(r.Context(), "dapr request failed",
		"path", r.URL.Path, "error_code", derr.ErrorCode, "status", derr.HTTPStatus)
	writeJSON(w, derr.HTTPStatus, map[string]string{"errorCode": derr.ErrorCode, "message": derr.Message})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"errorCode":"ERR_INTERNAL","message":"failed encoding response"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
