package openaiapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/parleyhq/parley/services/router/internal/conversation"
	"github.com/parleyhq/parley/services/router/internal/servertiming"
)

// chunk is OpenAI's chat.completion.chunk object.
type chunk struct {
	ID                string        `json:"id"`
	Object            string        `json:"object"`
	Created           int64         `json:"created"`
	Model             string        `json:"model"`
	SystemFingerprint *string       `json:"system_fingerprint"`
	Choices           []chunkChoice `json:"choices"`
	// Usage is null on every chunk but the last when the request asked for usage
	// (stream_options.include_usage), and absent otherwise, as OpenAI sends it.
	Usage json.RawMessage `json:"usage,omitempty"`
}

type chunkChoice struct {
	Index        int64     `json:"index"`
	Delta        delta     `json:"delta"`
	Logprobs     *struct{} `json:"logprobs"`
	FinishReason *string   `json:"finish_reason"`
}

type delta struct {
	Role      string          `json:"role,omitempty"`
	Content   *string         `json:"content,omitempty"`
	ToolCalls []toolCallDelta `json:"tool_calls,omitempty"`
}

type toolCallDelta struct {
	Index    int32             `json:"index"`
	ID       string            `json:"id,omitempty"`
	Type     string            `json:"type,omitempty"`
	Function functionCallDelta `json:"function"`
}

type functionCallDelta struct {
	Name      string `json:"name,omitempty"`
	Arguments string `json:"arguments"`
}

// streamOptions is the stream_options object; include_obfuscation (padding against
// side channels) is accepted and not needed: Parley sends no obfuscation field.
type streamOptions struct {
	IncludeUsage       bool            `json:"include_usage"`
	IncludeObfuscation json.RawMessage `json:"include_obfuscation"`
}

// Trailers of a streamed answer: whether it came from the cache and the Server-Timing
// value are known only once it ends.
const streamTrailers = CacheHeader + ", " + servertiming.Header

// sseWriter writes a streamed answer as Server-Sent Events, OpenAI's way: one
// chat.completion.chunk per event, then "data: [DONE]".
type sseWriter struct {
	w            http.ResponseWriter
	rc           *http.ResponseController
	id, model    string
	created      int64
	includeUsage bool
	started      bool
	// opened marks the choices whose first chunk (with the role) went out.
	opened map[int64]bool
}

// start writes the answer's headers before its first event.
func (s *sseWriter) start(requestID string) {
	if s.started {
		return
	}
	s.started = true
	s.id = CompletionIDPrefix + requestID
	h := s.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	h.Set(RequestIDHeader, requestID)
	h.Set("X-Request-Id", requestID)
	h.Set("Trailer", streamTrailers)
	s.w.WriteHeader(http.StatusOK)
}

func (s *sseWriter) event(choices []chunkChoice, usageJSON json.RawMessage) error {
	c := chunk{ID: s.id, Object: "chat.completion.chunk", Created: s.created, Model: s.model, Choices: choices}
	if s.includeUsage {
		c.Usage = json.RawMessage("null")
		if usageJSON != nil {
			c.Usage = usageJSON
		}
	}
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return s.write(b)
}

func (s *sseWriter) write(data []byte) error {
	buf := make([]byte, 0, len(data)+8)
	buf = append(buf, "data: "...)
	buf = append(buf, data...)
	buf = append(buf, "\n\n"...)
	if _, err := s.w.Write(buf); err != nil {
		return err
	}
	if err := s.rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	return nil
}

// delta sends one piece of a choice, opening the choice with the assistant role first.
func (s *sseWriter) delta(d conversation.Delta) error {
	s.start(d.RequestID)
	var out []chunkChoice
	if !s.opened[d.Choice] {
		s.opened[d.Choice] = true
		empty := ""
		out = append(out, chunkChoice{Index: d.Choice, Delta: delta{Role: "assistant", Content: &empty}})
	}
	piece := delta{}
	if d.Content != "" {
		content := d.Content
		piece.Content = &content
	}
	for _, tc := range d.ToolCalls {
		td := toolCallDelta{Index: tc.GetIndex(), ID: tc.GetId(), Function: functionCallDelta{Name: tc.GetName(), Arguments: tc.GetArguments()}}
		if td.ID != "" {
			td.Type = "function"
		}
		piece.ToolCalls = append(piece.ToolCalls, td)
	}
	if piece.Content != nil || len(piece.ToolCalls) > 0 {
		out = append(out, chunkChoice{Index: d.Choice, Delta: piece})
	}
	for _, c := range out {
		if err := s.event([]chunkChoice{c}, nil); err != nil {
			return err
		}
	}
	return nil
}

// finish sends each choice's finish reason, the usage when asked for, and [DONE].
func (s *sseWriter) finish(res *conversation.Result) error {
	s.start(res.RequestID)
	for _, c := range res.Response.GetChoices() {
		if !s.opened[c.GetIndex()] {
			s.opened[c.GetIndex()] = true
			empty := ""
			if err := s.event([]chunkChoice{{Index: c.GetIndex(), Delta: delta{Role: "assistant", Content: &empty}}}, nil); err != nil {
				return err
			}
		}
		reason := FinishReason(c)
		if err := s.event([]chunkChoice{{Index: c.GetIndex(), FinishReason: &reason}}, nil); err != nil {
			return err
		}
	}
	if s.includeUsage {
		u, err := json.Marshal(toUsage(res.Response.GetUsage()))
		if err != nil {
			return err
		}
		if err := s.event([]chunkChoice{}, u); err != nil {
			return err
		}
	}
	return s.write([]byte("[DONE]"))
}

// fail ends a stream that already started with OpenAI's error object as the last event
// (no [DONE]): the status line has gone out, so the error travels in the body.
func (s *sseWriter) fail(e *Error) {
	b, err := json.Marshal(errorBody{Error: errorObject{Message: e.Message, Type: e.Type, Param: nullable(e.Param), Code: nullable(e.Code)}})
	if err == nil {
		_ = s.write(b)
	}
}

// converseStream serves stream: true: the answer as chat.completion.chunk events as the
// conversation releases it (conversation.Service.ConverseStream: scrubbed, tokens
// restored), then each choice's finish reason, the usage when stream_options asks for it,
// and [DONE]. A failure before the first event is an ordinary error answer; after it, an
// error event ends the stream without [DONE]. Parley-Cache and Server-Timing are known
// only at the end: they come as trailers. Every chunk names the component's configured
// model (the provider's own is known only once the answer is complete), or the component.
func (h *Handler) converseStream(ctx context.Context, w http.ResponseWriter, r *http.Request, name string, includeUsage bool,
	comp conversation.Component, creq conversation.Request, timer servertiming.Timer,
) {
	model := comp.Model
	if model == "" {
		model = name
	}
	s := &sseWriter{w: w, rc: http.NewResponseController(w), model: model, created: h.now().Unix(), includeUsage: includeUsage, opened: map[int64]bool{}}
	var writeErr error
	res, err := h.conv.ConverseStream(ctx, creq, func(d conversation.Delta) error {
		if writeErr = s.delta(d); writeErr != nil {
			return writeErr
		}
		return nil
	})
	switch {
	case writeErr != nil:
		return // the caller went away
	case err != nil && !s.started:
		h.writeError(w, r, name, h.toOpenAI(ctx, name, err))
		return
	case err != nil:
		e := h.toOpenAI(ctx, name, err)
		h.logger.InfoContext(r.Context(), "openai stream failed", "model", name, "status", e.Status, "type", e.Type, "code", e.Code)
		s.fail(e)
		return
	}
	if err := s.finish(res); err != nil {
		return
	}
	w.Header().Set(CacheHeader, cacheValue(comp, creq, res))
	w.Header().Set(servertiming.Header, timer.Value(res.ProviderTime))
}
