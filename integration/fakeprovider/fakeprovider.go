// Package fakeprovider is an OpenAI-compatible chat completions server for people and
// benchmarks: it answers POST …/chat/completions (any path ending so: OpenAI's /v1, Azure's
// deployments path, Hugging Face's router path) with a deterministic answer of a
// configurable number of tokens after a configurable latency, streams it as server-sent
// events when the request says "stream": true, answers {"answer": "<the words>"} when the
// request asks for JSON (response_format json_schema or json_object), fails every n-th
// request on demand, and
// lists one model at …/models. It never calls out and keeps no request text.
//
// cmd/fakeprovider serves it on a port:
//
//	go run ./integration/cmd/fakeprovider -addr 127.0.0.1:8090 -latency 200ms -tokens 64
//
// and a Parley component points at it with `endpoint: http://127.0.0.1:8090/v1`.
package fakeprovider

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Defaults of Options.
const (
	DefaultTokens     = 16
	DefaultModel      = "fake-model"
	DefaultFailStatus = http.StatusServiceUnavailable
)

// maxRequestBody bounds a request body, as a real provider would.
const maxRequestBody = 8 << 20

// Options configures the fake. The zero value answers at once with DefaultTokens tokens.
type Options struct {
	// Latency is the wait before the answer (streaming: before the first chunk).
	Latency time.Duration
	// TokenInterval is the wait between two streamed content chunks.
	TokenInterval time.Duration
	// Tokens is the number of completion tokens (words) per answer; 0 means
	// DefaultTokens, a negative value none. A smaller max_tokens or
	// max_completion_tokens in the request caps it, with finish reason "length".
	Tokens int
	// FailEvery makes every FailEvery-th chat request fail with FailStatus; 0 never.
	FailEvery int
	// FailStatus is the status of injected failures; 0 means 503.
	FailStatus int
	// RetryAfter is sent as Retry-After (whole seconds, rounded up) with injected failures;
	// 0 sends none.
	RetryAfter time.Duration
	// Key, when set, must come as "Authorization: Bearer <Key>" or "api-key: <Key>".
	Key string
	// Model is reported when the request names none; empty means DefaultModel.
	Model string
	// Now stamps the created field; nil means time.Now.
	Now func() time.Time
}

// server is the fake; one value serves any number of concurrent requests.
type server struct {
	opts  Options
	words []string
	calls atomic.Uint64
}

// New returns the fake as an http.Handler.
func New(opts Options) http.Handler {
	if opts.Tokens == 0 {
		opts.Tokens = DefaultTokens
	}
	if opts.Tokens < 0 {
		opts.Tokens = 0
	}
	if opts.FailStatus == 0 {
		opts.FailStatus = DefaultFailStatus
	}
	if opts.Model == "" {
		opts.Model = DefaultModel
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &server{opts: opts, words: strings.Fields(vocabulary)}
}

// ServeHTTP routes: POST */chat/completions, GET */models, GET /healthz.
func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch path := strings.TrimRight(r.URL.Path, "/"); {
	case path == "/healthz":
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok\n")
	case strings.HasSuffix(path, "/chat/completions"):
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			writeError(w, http.StatusMethodNotAllowed, "invalid_request_error", "method_not_allowed", "", "use POST")
			return
		}
		s.chat(w, r)
	case strings.HasSuffix(path, "/models") && r.Method == http.MethodGet:
		if !s.authorised(r) {
			writeError(w, http.StatusUnauthorized, "invalid_request_error", "invalid_api_key", "", "invalid API key")
			return
		}
		writeJSON(w, http.StatusOK, modelList{Object: "list", Data: []model{{ID: s.opts.Model, Object: "model", OwnedBy: "parley"}}})
	default:
		writeError(w, http.StatusNotFound, "invalid_request_error", "unknown_url", "", "unknown path")
	}
}

func (s *server) authorised(r *http.Request) bool {
	if s.opts.Key == "" {
		return true
	}
	return r.Header.Get("Authorization") == "Bearer "+s.opts.Key || r.Header.Get("Api-Key") == s.opts.Key
}

func (s *server) chat(w http.ResponseWriter, r *http.Request) {
	if !s.authorised(r) {
		writeError(w, http.StatusUnauthorized, "invalid_request_error", "invalid_api_key", "", "invalid API key")
		return
	}
	req, err := decodeRequest(http.MaxBytesReader(w, r.Body, maxRequestBody))
	if err != nil {
		var (
			tooLarge *http.MaxBytesError
			bad      *requestError
		)
		switch {
		case errors.As(err, &tooLarge):
			writeError(w, http.StatusRequestEntityTooLarge, "invalid_request_error", "request_too_large", "", "request body too large")
		case errors.As(err, &bad):
			writeError(w, http.StatusBadRequest, "invalid_request_error", "invalid_request", bad.field, bad.msg)
		default:
			writeError(w, http.StatusBadRequest, "invalid_request_error", "invalid_request", "", "could not read the request body")
		}
		return
	}
	n := s.calls.Add(1)
	if s.opts.FailEvery > 0 && n%uint64(s.opts.FailEvery) == 0 {
		if s.opts.RetryAfter > 0 {
			w.Header().Set("Retry-After", strconv.FormatInt(int64(math.Ceil(s.opts.RetryAfter.Seconds())), 10))
		}
		writeError(w, s.opts.FailStatus, "server_error", "fake_failure", "", "injected failure")
		return
	}
	ans := s.answer(req, n)
	if req.Stream {
		s.stream(r.Context(), w, ans)
		return
	}
	if !wait(r.Context(), s.opts.Latency) {
		return
	}
	writeJSON(w, http.StatusOK, ans.object())
}

// requestError is a bad request; its message names the field, never its value.
type requestError struct {
	field string
	msg   string
}

func (e *requestError) Error() string { return e.msg }

// chatRequest is what the fake reads of a request.
type chatRequest struct {
	Model               string        `json:"model"`
	Messages            []chatMessage `json:"messages"`
	MaxTokens           int           `json:"max_tokens"`
	MaxCompletionTokens int           `json:"max_completion_tokens"`
	Stream              bool          `json:"stream"`
	StreamOptions       *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	Tools []struct {
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
	} `json:"tools"`
	ToolChoice     json.RawMessage `json:"tool_choice"`
	ResponseFormat *struct {
		Type string `json:"type"`
	} `json:"response_format"`
}

type chatMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

// decodeRequest reads and checks a chat request; a bad one is a *requestError.
func decodeRequest(body io.Reader) (*chatRequest, error) {
	data, err := io.ReadAll(body)
	if err != nil {
		return nil, fmt.Errorf("read request: %w", err)
	}
	var req chatRequest
	if err := json.Unmarshal(data, &req); err != nil {
		return nil, &requestError{msg: "request body is not a valid chat completions request"}
	}
	if len(req.Messages) == 0 {
		return nil, &requestError{field: "messages", msg: "'messages' must be a non-empty array"}
	}
	for i, m := range req.Messages {
		if m.Role == "" {
			return nil, &requestError{field: fmt.Sprintf("messages[%d].role", i), msg: "every message needs a role"}
		}
	}
	if req.MaxTokens < 0 || req.MaxCompletionTokens < 0 {
		return nil, &requestError{field: "max_tokens", msg: "max tokens must not be negative"}
	}
	return &req, nil
}

// vocabulary is the fake's words; an answer cycles through them, one word per token.
const vocabulary = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor " +
	"incididunt ut labore et dolore magna aliqua"

// answer is what the fake replies to one request.
type answer struct {
	id           string
	created      int64
	model        string
	tokens       []string // content tokens, each with its trailing space but the last
	toolName     string   // set when the answer is a tool call
	toolCallID   string
	finish       string
	prompt       int
	completion   int
	includeUsage bool
}

func (s *server) answer(req *chatRequest, n uint64) *answer {
	a := &answer{
		id:           "chatcmpl-fake-" + strconv.FormatUint(n, 10),
		created:      s.opts.Now().Unix(),
		model:        req.Model,
		finish:       "stop",
		prompt:       promptTokens(req.Messages),
		completion:   s.opts.Tokens,
		includeUsage: req.StreamOptions != nil && req.StreamOptions.IncludeUsage,
	}
	if a.model == "" {
		a.model = s.opts.Model
	}
	limit := req.MaxCompletionTokens
	if limit == 0 {
		limit = req.MaxTokens
	}
	if limit > 0 && limit < a.completion {
		a.completion, a.finish = limit, "length"
	}
	if name := forcedTool(req); name != "" {
		a.toolName, a.toolCallID, a.finish = name, "call_fake_"+strconv.FormatUint(n, 10), "tool_calls"
		return a
	}
	a.tokens = make([]string, a.completion)
	for i := range a.tokens {
		w := s.words[i%len(s.words)]
		if i < len(a.tokens)-1 {
			w += " "
		}
		a.tokens[i] = w
	}
	if rf := req.ResponseFormat; rf != nil && (rf.Type == "json_schema" || rf.Type == "json_object") && len(a.tokens) > 0 {
		// Structured output: the words as the string "answer" of a JSON object.
		a.tokens[0] = `{"answer":"` + a.tokens[0]
		a.tokens[len(a.tokens)-1] += `"}`
	}
	return a
}

// forcedTool names the tool the request forces: the named one, or the first tool when
// tool_choice is "required" (or "any"); "" otherwise.
func forcedTool(req *chatRequest) string {
	if len(req.Tools) == 0 {
		return ""
	}
	var choice string
	if json.Unmarshal(req.ToolChoice, &choice) == nil {
		if choice == "required" || choice == "any" {
			return req.Tools[0].Function.Name
		}
		return ""
	}
	var named struct {
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
	}
	if json.Unmarshal(req.ToolChoice, &named) == nil {
		return named.Function.Name
	}
	return ""
}

// promptTokens counts the whitespace-separated words of every message's text.
func promptTokens(msgs []chatMessage) int {
	n := 0
	for _, m := range msgs {
		c := bytes.TrimSpace(m.Content)
		if len(c) == 0 {
			continue
		}
		switch c[0] {
		case '"':
			var s string
			if json.Unmarshal(c, &s) == nil {
				n += len(strings.Fields(s))
			}
		case '[':
			var parts []struct {
				Text string `json:"text"`
			}
			if json.Unmarshal(c, &parts) == nil {
				for _, p := range parts {
					n += len(strings.Fields(p.Text))
				}
			}
		}
	}
	return n
}

func (a *answer) usage() *Usage {
	return &Usage{
		PromptTokens:        a.prompt,
		CompletionTokens:    a.completion,
		TotalTokens:         a.prompt + a.completion,
		PromptTokensDetails: &PromptTokensDetails{},
	}
}

func (a *answer) toolCalls() []ToolCall {
	if a.toolName == "" {
		return nil
	}
	return []ToolCall{{ID: a.toolCallID, Type: "function", Function: FunctionCall{Name: a.toolName, Arguments: "{}"}}}
}

func (a *answer) object() *Completion {
	msg := Message{Role: "assistant", ToolCalls: a.toolCalls()}
	if a.toolName == "" {
		content := strings.Join(a.tokens, "")
		msg.Content = &content
	}
	return &Completion{
		ID: a.id, Object: "chat.completion", Created: a.created, Model: a.model,
		Choices: []Choice{{Index: 0, Message: &msg, FinishReason: &a.finish}},
		Usage:   a.usage(),
	}
}

// stream writes the answer as chat.completion.chunk events: the role, one chunk per
// token (or one tool call), the finish reason, the usage when asked, then [DONE].
func (s *server) stream(ctx context.Context, w http.ResponseWriter, a *answer) {
	flusher, _ := w.(http.Flusher)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	if !wait(ctx, s.opts.Latency) {
		return
	}
	w.WriteHeader(http.StatusOK)
	chunk := func(delta *Message, finish *string) *Completion {
		return &Completion{
			ID: a.id, Object: "chat.completion.chunk", Created: a.created, Model: a.model,
			Choices: []Choice{{Index: 0, Delta: delta, FinishReason: finish}},
		}
	}
	empty := ""
	send := func(c *Completion) bool {
		if err := writeEvent(w, c); err != nil {
			return false
		}
		if flusher != nil {
			flusher.Flush()
		}
		return true
	}
	if !send(chunk(&Message{Role: "assistant", Content: &empty}, nil)) {
		return
	}
	for i, tok := range a.tokens {
		if i > 0 && !wait(ctx, s.opts.TokenInterval) {
			return
		}
		if !send(chunk(&Message{Content: &tok}, nil)) {
			return
		}
	}
	if calls := a.toolCalls(); calls != nil {
		calls[0].Index = new(int)
		if !send(chunk(&Message{ToolCalls: calls}, nil)) {
			return
		}
	}
	if !send(chunk(&Message{}, &a.finish)) {
		return
	}
	if a.includeUsage {
		if !send(&Completion{ID: a.id, Object: "chat.completion.chunk", Created: a.created, Model: a.model,
			Choices: []Choice{}, Usage: a.usage()}) {
			return
		}
	}
	_, _ = io.WriteString(w, "data: [DONE]\n\n")
	if flusher != nil {
		flusher.Flush()
	}
}

func writeEvent(w io.Writer, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode chunk: %w", err)
	}
	buf := make([]byte, 0, len(data)+8)
	buf = append(buf, "data: "...)
	buf = append(buf, data...)
	buf = append(buf, "\n\n"...)
	if _, err := w.Write(buf); err != nil {
		return fmt.Errorf("write chunk: %w", err)
	}
	return nil
}

// wait sleeps d, or returns false as soon as ctx ends (the client left).
func wait(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "encode response", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(data)
}

// apiError is OpenAI's error object.
type apiError struct {
	Error struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    string  `json:"code"`
	} `json:"error"`
}

func writeError(w http.ResponseWriter, status int, typ, code, param, msg string) {
	var e apiError
	e.Error.Message, e.Error.Type, e.Error.Code = msg, typ, code
	if param != "" {
		e.Error.Param = &param
	}
	writeJSON(w, status, e)
}

type modelList struct {
	Object string  `json:"object"`
	Data   []model `json:"data"`
}

type model struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}
