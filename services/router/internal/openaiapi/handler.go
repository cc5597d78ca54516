// Package openaiapi serves the OpenAI-compatible Chat Completions API on the router:
// POST /v1/chat/completions (whole answers, and Server-Sent Events with stream: true) and
// GET /v1/models, so clients written against
// OpenAI's SDKs reach Parley's components by changing their base URL. The model field
// names a component; requests become the same conversation.Request as every other API's,
// with scrubbing and the cache steered by Parley headers (headers.go). Errors have
// OpenAI's shape and statuses (errors.go). docs/openai.md is the reference.
package openaiapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/parleyhq/parley/libs/jsondepth"
	"github.com/parleyhq/parley/services/router/internal/conversation"
	"github.com/parleyhq/parley/services/router/internal/servertiming"
	"github.com/parleyhq/parley/services/router/internal/tenant"
)

// Converser runs conversations.
type Converser interface {
	Lookup(name string) (conversation.Component, bool)
	Converse(ctx context.Context, req conversation.Request) (*conversation.Result, error)
	ConverseStream(ctx context.Context, req conversation.Request, emit func(conversation.Delta) error) (*conversation.Result, error)
}

// ComponentLister lists the configured components for GET /v1/models.
type ComponentLister interface {
	List() []conversation.Component
}

// Admitter admits a conversation for the caller's API key (package apikey): the component
// against the key's components, the request's size against its limits. The returned
// context carries the caller, whose usage the conversation settles.
type Admitter interface {
	Admit(ctx context.Context, component string, requestBytes int) (context.Context, error)
}

// Options tune the Handler.
type Options struct {
	// MaxBodyBytes caps a request body.
	MaxBodyBytes int64
	// Timeout bounds a call whose client set no deadline.
	Timeout time.Duration
	// AdmitStatus gives the HTTP status and Retry-After seconds (0: none) of an admission
	// refusal (apikey.HTTPStatus): 429 for a limit, 403 for a component the key may not
	// use, 503 when the limits cannot be checked.
	AdmitStatus func(error) (status int, retryAfterSeconds int64)
}

// Handler serves the OpenAI-compatible API.
type Handler struct {
	conv       Converser
	components ComponentLister
	admit      Admitter
	opts       Options
	logger     *slog.Logger
	now        func() time.Time
}

// New returns a Handler; admit may be nil (every request admitted).
func New(conv Converser, components ComponentLister, admit Admitter, opts Options, logger *slog.Logger) *Handler {
	return &Handler{conv: conv, components: components, admit: admit, opts: opts, logger: logger, now: time.Now}
}

// bodyEnvelopeDepth is how deep a request's own structure nests before a JSON value
// starts (messages[].content[] parts, tools[].function.parameters,
// response_format.json_schema.schema).
const bodyEnvelopeDepth = 8

// ChatCompletions serves POST /v1/chat/completions.
func (h *Handler) ChatCompletions(w http.ResponseWriter, r *http.Request) {
	timer := servertiming.Start()
	req, size, e := h.read(w, r)
	if e != nil {
		h.writeError(w, r, "", e)
		return
	}
	comp, e := h.lookup(req.Model)
	if e != nil {
		h.writeError(w, r, req.Model, e)
		return
	}
	stream := req.Stream != nil && *req.Stream
	var opts streamOptions
	if set(req.StreamOptions) {
		if err := decodeStrict(req.StreamOptions, &opts); err != nil {
			h.writeError(w, r, req.Model, decodeError("stream_options", err))
			return
		}
	}
	creq, e := translate(req, r.Header)
	if e != nil {
		h.writeError(w, r, req.Model, e)
		return
	}
	ctx := r.Context()
	if h.admit != nil {
		admitted, err := h.admit.Admit(ctx, req.Model, size)
		if err != nil {
			h.writeError(w, r, req.Model, h.admissionError(err))
			return
		}
		ctx = admitted
		// Settles a request that never reached the conversation; the conversation
		// settles the others (only the first report counts).
		defer tenant.From(ctx).Settle(0)
	}
	ctx, cancel := h.withTimeout(ctx)
	defer cancel()
	if stream {
		h.converseStream(ctx, w, r, req.Model, opts.IncludeUsage, comp, creq, timer)
		return
	}
	res, err := h.conv.Converse(ctx, creq)
	if err != nil {
		h.writeError(w, r, req.Model, h.toOpenAI(ctx, req.Model, err))
		return
	}
	b, err := json.Marshal(toCompletion(req.Model, res, h.now()))
	if err != nil {
		h.writeError(w, r, req.Model, h.toOpenAI(ctx, req.Model, fmt.Errorf("encode completion: %w", err)))
		return
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "application/json")
	hdr.Set(CacheHeader, cacheValue(comp, creq, res))
	hdr.Set(RequestIDHeader, res.RequestID)
	hdr.Set("X-Request-Id", res.RequestID)
	hdr.Set(servertiming.Header, timer.Value(res.ProviderTime))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

// read reads and decodes the body: bounded in size, refused cheaply when nested deeper
// than any valid request, decoded strictly.
func (h *Handler) read(w http.ResponseWriter, r *http.Request) (*chatRequest, int, *Error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.opts.MaxBodyBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, 0, &Error{Status: http.StatusRequestEntityTooLarge, Type: typeInvalidRequest, Code: "request_too_large",
				Message: fmt.Sprintf("The request body is larger than %d bytes.", h.opts.MaxBodyBytes)}
		}
		return nil, 0, invalidParam("", "Failed to read the request body: %v.", err)
	}
	// Values are checked exactly once decoded (conversation.InvalidRequestError).
	if jsondepth.Exceeds(body, jsondepth.Max+bodyEnvelopeDepth) {
		return nil, 0, invalidParam("", "The JSON body nests deeper than %d levels.", jsondepth.Max+bodyEnvelopeDepth)
	}
	req, e := decodeRequest(body)
	return req, len(body), e
}

// admissionError is the answer to a request its key may not make now: a limit's 429 with
// Retry-After, a component the key may not use (403), the limits unavailable (503).
func (h *Handler) admissionError(err error) *Error {
	status, retry := http.StatusServiceUnavailable, int64(0)
	if h.opts.AdmitStatus != nil {
		status, retry = h.opts.AdmitStatus(err)
	}
	switch status {
	case http.StatusTooManyRequests:
		return &Error{Status: status, Type: typeRateLimit, Code: "rate_limit_exceeded", Message: err.Error() + ".",
			RetryAfter: time.Duration(retry) * time.Second}
	case http.StatusForbidden:
		return &Error{Status: status, Type: "permission_error", Code: "model_not_allowed", Param: "model", Message: "This API key may not use this model."}
	default:
		return &Error{Status: status, Type: typeServer, Code: "service_unavailable", Message: err.Error() + "."}
	}
}

// lookup resolves the model field to a component.
func (h *Handler) lookup(model string) (conversation.Component, *Error) {
	switch {
	case model == "":
		return conversation.Component{}, invalidParam("model", "You must provide a model parameter.")
	case len(model) > conversation.MaxComponentName:
		// No component has such a name; the message and the log keep a bounded prefix.
		return conversation.Component{}, modelNotFound(model[:conversation.MaxComponentName] + "…")
	}
	comp, ok := h.conv.Lookup(model)
	if !ok {
		return conversation.Component{}, modelNotFound(model)
	}
	return comp, nil
}

func (h *Handler) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok || h.opts.Timeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, h.opts.Timeout)
}

// cacheValue is the Parley-Cache answer header: off when the component caches nothing or
// the request bypassed the cache.
func cacheValue(comp conversation.Component, req conversation.Request, res *conversation.Result) string {
	switch {
	case res.CacheHit:
		return "hit"
	case comp.CacheTTL <= 0 || req.BypassCache:
		return "off"
	default:
		return "miss"
	}
}

func (h *Handler) writeError(w http.ResponseWriter, r *http.Request, model string, e *Error) {
	if len(model) > conversation.MaxComponentName {
		model = model[:conversation.MaxComponentName] + "…"
	}
	h.logger.InfoContext(r.Context(), "openai request failed",
		"path", r.URL.Path, "model", model, "status", e.Status, "type", e.Type, "code", e.Code)
	WriteError(w, e)
}

// model is OpenAI's model object.
type model struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

func toModel(c conversation.Component) model {
	// owned_by names the provider behind the component, e.g. "openai" or "echo".
	return model{ID: c.Name, Object: "model", Created: 0, OwnedBy: strings.TrimPrefix(c.Type, "conversation.")}
}

// Models serves GET /v1/models: every component the caller's key may use, sorted by name.
func (h *Handler) Models(w http.ResponseWriter, r *http.Request) {
	list := h.components.List()
	data := make([]model, 0, len(list))
	for _, c := range list {
		if tenant.From(r.Context()).MayUse(c.Name) {
			data = append(data, toModel(c))
		}
	}
	slices.SortFunc(data, func(a, b model) int { return strings.Compare(a.ID, b.ID) })
	writeJSON(w, struct {
		Object string  `json:"object"`
		Data   []model `json:"data"`
	}{"list", data})
}

// Model serves GET /v1/models/{id}: a component the caller may not use is not found.
func (h *Handler) Model(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	comp, e := h.lookup(id)
	if e == nil && !tenant.From(r.Context()).MayUse(id) {
		e = modelNotFound(id) // OpenAI's answer for a model the key has no access to
	}
	if e != nil {
		h.writeError(w, r, id, e)
		return
	}
	writeJSON(w, toModel(comp))
}

// maxURLInError bounds the path an Invalid URL error echoes.
const maxURLInError = 256

// NotFound answers any other path under /v1/, or a known path with another method, as
// OpenAI does: 404 "Invalid URL (METHOD /path)".
func (h *Handler) NotFound(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	if len(path) > maxURLInError {
		path = path[:maxURLInError] + "…"
	}
	WriteError(w, &Error{Status: http.StatusNotFound, Type: typeInvalidRequest,
		Message: fmt.Sprintf("Invalid URL (%s %s)", r.Method, path)})
}

func writeJSON(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		WriteError(w, &Error{Status: http.StatusInternalServerError, Type: typeServer, Message: "failed encoding the response"})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}
