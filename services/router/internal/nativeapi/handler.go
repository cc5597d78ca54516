// Package nativeapi serves parley.conversation.v1.ConversationService: Dapr's alpha2
// model made typed, over Connect, gRPC and gRPC-Web.
package nativeapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"connectrpc.com/connect"

	auditv1 "github.com/parleyhq/parley/gen/pb/parley/audit/v1"
	conversationv1 "github.com/parleyhq/parley/gen/pb/parley/conversation/v1"
	"github.com/parleyhq/parley/gen/pb/parley/conversation/v1/conversationv1connect"
	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/libs/rpcserver"
	"github.com/parleyhq/parley/services/router/internal/conversation"
	"github.com/parleyhq/parley/services/router/internal/servertiming"
)

// Converser runs conversations.
type Converser interface {
	Converse(ctx context.Context, req conversation.Request) (*conversation.Result, error)
	ConverseStream(ctx context.Context, req conversation.Request, emit func(conversation.Delta) error) (*conversation.Result, error)
}

// Handler implements ConversationService.
type Handler struct {
	conv    Converser
	timeout time.Duration
	logger  *slog.Logger
}

var _ conversationv1connect.ConversationServiceHandler = (*Handler)(nil)

// New returns a Handler; timeout bounds calls whose client set no deadline.
func New(conv Converser, timeout time.Duration, logger *slog.Logger) *Handler {
	return &Handler{conv: conv, timeout: timeout, logger: logger}
}

// Converse runs one conversation turn.
func (h *Handler) Converse(ctx context.Context, req *conversationv1.ConverseRequest) (*conversationv1.ConverseResponse, error) {
	out, _, err := h.converse(ctx, req)
	return out, err
}

// converse runs one conversation turn and sets the Server-Timing trailer of a unary call;
// it also returns the trailer's value.
func (h *Handler) converse(ctx context.Context, req *conversationv1.ConverseRequest) (*conversationv1.ConverseResponse, string, error) {
	timer := servertiming.Start()
	creq, err := fromNative(req)
	if err != nil {
		return nil, "", connect.NewError(connect.CodeInvalidArgument, err)
	}
	if _, ok := ctx.Deadline(); !ok && h.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, h.timeout)
		defer cancel()
	}
	res, err := h.conv.Converse(ctx, creq)
	if err != nil {
		return nil, "", h.toConnect(ctx, req.GetComponent(), err)
	}
	out := toNative(req, res)
	timing := timer.Value(res.ProviderTime)
	if ci, ok := connect.CallInfoForHandlerContext(ctx); ok {
		ci.ResponseTrailer().Set(servertiming.Header, timing)
	}
	return out, timing, nil
}

// ConverseStream runs one conversation turn and streams the answer as the provider
// produces it (conversation.Service.ConverseStream): content and tool-call deltas as they
// become safe to release (scrubbed, tokens restored), then one message per choice with
// its finish reason, the last of them with usage, model and whether the answer came from
// the cache. A cache hit is replayed the same way. A failure before the first delta is the
// call's error as for Converse; a failure after it ends the stream with that error, never
// a shorter success.
func (h *Handler) ConverseStream(ctx context.Context, req *conversationv1.ConverseStreamRequest, stream *connect.ServerStream[conversationv1.ConverseStreamResponse]) error {
	timer := servertiming.Start()
	nreq := req.GetRequest()
	creq, err := fromNative(nreq)
	if err != nil {
		return connect.NewError(connect.CodeInvalidArgument, err)
	}
	if _, ok := ctx.Deadline(); !ok && h.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, h.timeout)
		defer cancel()
	}
	var sendErr error
	res, err := h.conv.ConverseStream(ctx, creq, func(d conversation.Delta) error {
		msg := &conversationv1.ConverseStreamResponse{RequestId: d.RequestID, Index: d.Choice, ContentDelta: d.Content}
		for _, tc := range d.ToolCalls {
			msg.ToolCalls = append(msg.ToolCalls, &conversationv1.ToolCall{Index: tc.GetIndex(), Id: tc.GetId(), Name: tc.GetName(), Arguments: tc.GetArguments()})
		}
		if err := stream.Send(msg); err != nil {
			sendErr = fmt.Errorf("send stream message: %w", err)
			return sendErr
		}
		return nil
	})
	if sendErr != nil {
		return sendErr
	}
	if err != nil {
		return h.toConnect(ctx, nreq.GetComponent(), err)
	}
	stream.ResponseTrailer().Set(servertiming.Header, timer.Value(res.ProviderTime))
	out := toNative(nreq, res)
	choices := out.GetChoices()
	last := &conversationv1.ConverseStreamResponse{RequestId: out.GetRequestId(), Usage: out.GetUsage(), CacheHit: out.GetCacheHit(), Model: out.GetModel()}
	if len(choices) == 0 {
		return stream.Send(last) //nolint:wrapcheck // Connect's own error
	}
	for i, c := range choices {
		msg := &conversationv1.ConverseStreamResponse{RequestId: out.GetRequestId(), Index: c.GetIndex(), FinishReason: c.GetFinishReason()}
		if i == len(choices)-1 {
			msg.Usage, msg.CacheHit, msg.Model = last.Usage, last.CacheHit, last.Model
		}
		if err := stream.Send(msg); err != nil {
			return fmt.Errorf("send stream message: %w", err)
		}
	}
	return nil
}

func fromNative(req *conversationv1.ConverseRequest) (conversation.Request, error) {
	if req.GetComponent() == "" {
		return conversation.Request{}, errors.New("component is required")
	}
	if len(req.GetComponent()) > conversation.MaxComponentName {
		return conversation.Request{}, fmt.Errorf("component name is longer than %d bytes", conversation.MaxComponentName)
	}
	if len(req.GetMessages()) == 0 {
		return conversation.Request{}, errors.New("messages must not be empty")
	}
	if _, ok := conversationv1.ScrubMode_name[int32(req.GetScrub().GetMode())]; !ok {
		return conversation.Request{}, fmt.Errorf("unknown scrub mode %d", req.GetScrub().GetMode())
	}
	if req.MaxTokens != nil && req.GetMaxTokens() <= 0 {
		return conversation.Request{}, errors.New("max_tokens must be positive")
	}
	if req.Temperature != nil && (req.GetTemperature() < 0 || req.GetTemperature() > 2) {
		return conversation.Request{}, errors.New("temperature must be between 0 and 2")
	}
	p := &providerv1.Request{
		Component:      req.GetComponent(),
		Temperature:    req.GetTemperature(),
		Stop:           req.GetStop(),
		ResponseFormat: req.GetResponseFormat(),
		Metadata:       req.GetMetadata(),
	}
	if req.MaxTokens != nil {
		v := req.GetMaxTokens()
		p.MaxTokens = &v
	}
	for i, t := range req.GetTools() {
		if t.GetName() == "" {
			return conversation.Request{}, fmt.Errorf("tools[%d].name is required", i)
		}
		p.Tools = append(p.Tools, &providerv1.Tool{Type: "function", Name: t.GetName(), Description: t.GetDescription(), Parameters: t.GetParameters()})
	}
	choice := req.GetToolChoice()
	if choice == "" && len(p.Tools) > 0 {
		choice = "auto"
	}
	switch choice {
	case "", "auto", "none":
	case "required":
		if len(p.Tools) == 0 {
			return conversation.Request{}, errors.New(`tool_choice "required" needs at least one tool`)
		}
	default:
		if !slices.ContainsFunc(p.Tools, func(t *providerv1.Tool) bool { return t.GetName() == choice }) {
			return conversation.Request{}, fmt.Errorf("tool_choice %q names no tool of the request", choice)
		}
	}
	p.ToolChoice = choice
	for i, m := range req.GetMessages() {
		msg, err := fromNativeMessage(m)
		if err != nil {
			return conversation.Request{}, fmt.Errorf("messages[%d]: %w", i, err)
		}
		p.Messages = append(p.Messages, msg)
	}
	scrub := make([]bool, len(p.Messages))
	if req.GetScrub().GetInputs() {
		for i := range scrub {
			scrub[i] = true
		}
	}
	return conversation.Request{
		API:                auditv1.Api_API_NATIVE,
		Provider:           p,
		ScrubInput:         scrub,
		ScrubOutput:        req.GetScrub().GetOutputs(),
		ScrubToolArguments: req.GetScrub().GetOutputs(),
		Tokenize:           req.GetScrub().GetMode() == conversationv1.ScrubMode_SCRUB_MODE_TOKENIZE,
		BypassCache:        req.GetCacheMode() == conversationv1.CacheMode_CACHE_MODE_BYPASS,
		ContextID:          req.GetContextId(),
		ErrorCode:          auditCode,
	}, nil
}

func fromNativeMessage(m *conversationv1.Message) (*providerv1.Message, error) {
	text := &providerv1.Part{Kind: &providerv1.Part_Text{Text: m.GetContent()}}
	switch m.GetRole() {
	case conversationv1.Role_ROLE_SYSTEM:
		return &providerv1.Message{Role: providerv1.Role_ROLE_SYSTEM, Parts: []*providerv1.Part{text}}, nil
	case conversationv1.Role_ROLE_DEVELOPER:
		return &providerv1.Message{Role: providerv1.Role_ROLE_DEVELOPER, Parts: []*providerv1.Part{text}}, nil
	case conversationv1.Role_ROLE_USER:
		return &providerv1.Message{Role: providerv1.Role_ROLE_USER, Parts: []*providerv1.Part{text}}, nil
	case conversationv1.Role_ROLE_ASSISTANT:
		msg := &providerv1.Message{Role: providerv1.Role_ROLE_ASSISTANT}
		if m.GetContent() != "" || len(m.GetToolCalls()) == 0 {
			msg.Parts = append(msg.Parts, text)
		}
		for _, tc := range m.GetToolCalls() {
			if tc.GetName() == "" {
				return nil, errors.New("tool call name is required")
			}
			msg.Parts = append(msg.Parts, &providerv1.Part{Kind: &providerv1.Part_ToolCall{ToolCall: &providerv1.ToolCall{
				Id: tc.GetId(), Type: "function", Name: tc.GetName(), Arguments: tc.GetArguments(),
			}}})
		}
		return msg, nil
	case conversationv1.Role_ROLE_TOOL:
		return &providerv1.Message{Role: providerv1.Role_ROLE_TOOL, Parts: []*providerv1.Part{{Kind: &providerv1.Part_ToolResult{
			ToolResult: &providerv1.ToolResult{ToolCallId: m.GetToolCallId(), Name: m.GetName(), Content: m.GetContent()},
		}}}}, nil
	default:
		return nil, errors.New("role is required")
	}
}

func toNative(req *conversationv1.ConverseRequest, res *conversation.Result) *conversationv1.ConverseResponse {
	resp := res.Response
	out := &conversationv1.ConverseResponse{
		RequestId: res.RequestID,
		ContextId: req.GetContextId(),
		Model:     resp.GetModel(),
		CacheHit:  res.CacheHit,
	}
	if u := resp.GetUsage(); u != nil {
		out.Usage = &conversationv1.Usage{
			PromptTokens: u.GetPromptTokens(), CompletionTokens: u.GetCompletionTokens(), TotalTokens: u.GetTotalTokens(),
			CachedTokens: u.GetPromptCachedTokens(), ReasoningTokens: u.GetCompletionReasoningTokens(),
		}
	}
	for _, c := range resp.GetChoices() {
		msg := &conversationv1.Message{Role: conversationv1.Role_ROLE_ASSISTANT, Content: c.GetContent()}
		for _, tc := range c.GetToolCalls() {
			msg.ToolCalls = append(msg.ToolCalls, &conversationv1.ToolCall{Id: tc.GetId(), Name: tc.GetName(), Arguments: tc.GetArguments()})
		}
		out.Choices = append(out.Choices, &conversationv1.Choice{Index: c.GetIndex(), FinishReason: c.GetFinishReason(), Message: msg})
	}
	return out
}

// connectCode is the Connect code a caller gets for err, by its kind; this is the only
// place that maps kinds to codes.
func connectCode(err error) connect.Code {
	switch conversation.KindOf(err) {
	case conversation.KindCanceled:
		return connect.CodeCanceled
	case conversation.KindDeadlineExceeded:
		return connect.CodeDeadlineExceeded
	case conversation.KindComponentNotFound:
		return connect.CodeNotFound
	case conversation.KindInvalidRequest:
		return connect.CodeInvalidArgument
	case conversation.KindNoWorker, conversation.KindWorkerLost, conversation.KindScrub, conversation.KindAudit:
		return connect.CodeUnavailable
	case conversation.KindProvider:
		var pe *conversation.ProviderError
		errors.As(err, &pe)
		return providerCode(pe.Code)
	default:
		return connect.CodeInternal
	}
}

// toConnect is the error a caller gets for a domain error: connectCode's code with a
// message for its kind. A cancelled or expired call keeps its context error, which
// Connect sends as CANCELED or DEADLINE_EXCEEDED. The scrubber's and the audit stream's
// errors are Parley's internals: the caller gets a fixed message with an error id, and
// the log line with the cause the same id.
func (h *Handler) toConnect(ctx context.Context, component string, err error) error {
	var msg error
	switch conversation.KindOf(err) {
	case conversation.KindCanceled, conversation.KindDeadlineExceeded:
		return err
	case conversation.KindComponentNotFound:
		msg = fmt.Errorf("component %q is not configured", component)
	case conversation.KindInvalidRequest:
		var ire *conversation.InvalidRequestError
		errors.As(err, &ire)
		msg = ire
	case conversation.KindNoWorker, conversation.KindWorkerLost:
		msg = fmt.Errorf("component %q: %w", component, err)
	case conversation.KindScrub:
		msg = fmt.Errorf("pii scrubbing is unavailable; the request was not sent (id %s)", h.logCause(ctx, component, err))
	case conversation.KindAudit:
		msg = fmt.Errorf("the audit log is unavailable; the answer was withheld (id %s)", h.logCause(ctx, component, err))
	case conversation.KindProvider:
		var pe *conversation.ProviderError
		errors.As(err, &pe)
		msg = fmt.Errorf("component %q: %s", component, pe.Message)
	default:
		return err // rpcserver's masking interceptor gives it an id
	}
	return connect.NewError(connectCode(err), msg)
}

// logCause logs an internal error under a new error id and returns the id.
func (h *Handler) logCause(ctx context.Context, component string, err error) string {
	return rpcserver.LogError(ctx, h.logger, "conversation failed", err, "component", component)
}

// auditCode is the name of the Connect code a caller gets for err; the audit log records
// it. An error without a code is recorded as internal, as the masking interceptor sends it.
func auditCode(err error) string { return connectCode(err).String() }

func providerCode(c providerv1.ErrorCode) connect.Code {
	switch c {
	case providerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT:
		return connect.CodeInvalidArgument
	case providerv1.ErrorCode_ERROR_CODE_NOT_FOUND:
		return connect.CodeNotFound
	case providerv1.ErrorCode_ERROR_CODE_UNAVAILABLE:
		return connect.CodeUnavailable
	case providerv1.ErrorCode_ERROR_CODE_DEADLINE_EXCEEDED:
		return connect.CodeDeadlineExceeded
	default:
		return connect.CodeInternal
	}
}
