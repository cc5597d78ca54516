package openai

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/services/provider-worker/provider"
)

// errNoDone reports a stream that ended before its [DONE] event: a truncated answer.
var errNoDone = errors.New("event stream ended before [DONE]")

// ConverseStream sends req with "stream": true (and stream_options.include_usage unless
// the dialect refuses it) and emits each content and tool-call delta as it arrives. The
// final Response has each choice's index and finish reason, the model and the usage of the
// usage chunk (nil when the provider sent none). A malformed event, an error event and a
// stream that ends before [DONE] are UNAVAILABLE errors whose messages name the event
// number, never its text. Errors are classified as Converse's.
func (c *Client) ConverseStream(ctx context.Context, req *providerv1.Request, emit func(*providerv1.Chunk) error) (*providerv1.Response, error) {
	resp, err := c.converseStream(ctx, req, emit)
	if err != nil {
		return nil, c.redact(err)
	}
	return resp, nil
}

func (c *Client) converseStream(ctx context.Context, req *providerv1.Request, emit func(*providerv1.Chunk) error) (*providerv1.Response, error) {
	cr, err := c.buildRequest(req, func(err error) {
		c.log.WarnContext(ctx, "response_format ignored: not convertible to a json_schema",
			"provider", c.name, "request_id", req.GetRequestId(), "err", err)
	})
	if err != nil {
		return nil, err
	}
	cr.Stream = true
	if !c.dialect.NoStreamOptions {
		cr.StreamOptions = &streamOptions{IncludeUsage: true}
	}
	body, err := json.Marshal(cr)
	if err != nil {
		return nil, provider.InvalidArgument(fmt.Errorf("%s: encode request: %w", c.name, err))
	}
	res, err := c.send(ctx, body, "text/event-stream")
	if err != nil {
		return nil, err
	}
	defer func() { _ = res.Body.Close() }()
	st := newStreamState(c.model)
	sse := provider.NewSSEReader(io.LimitReader(res.Body, maxResponseBody))
	for {
		ev, err := sse.Next()
		if errors.Is(err, io.EOF) {
			return nil, provider.Unavailable(fmt.Errorf("%s: %w (after %d events)", c.name, errNoDone, sse.Events()), 0)
		}
		if err != nil {
			return nil, c.callError(ctx, "read event stream", err)
		}
		if string(ev.Data) == "[DONE]" {
			return st.response(), nil
		}
		chunks, err := st.decode(ev.Data)
		if err != nil {
			return nil, provider.Unavailable(fmt.Errorf("%s: event %d: %w", c.name, sse.Events(), err), 0)
		}
		for _, ch := range chunks {
			if err := emit(ch); err != nil {
				return nil, err //nolint:wrapcheck // the worker's own error (cancelled, no credit), returned as is
			}
		}
	}
}

// streamState assembles what the final Response of a stream needs.
type streamState struct {
	model    string
	finish   map[int64]string
	order    []int64
	usage    *providerv1.Usage
	fallback string
}

func newStreamState(fallback string) *streamState {
	return &streamState{finish: map[int64]string{}, fallback: fallback}
}

// decode reads one chat.completion.chunk and returns the chunks to emit: one per choice
// that carries content, tool calls or a finish reason. Errors describe the structure only.
func (st *streamState) decode(data []byte) ([]*providerv1.Chunk, error) {
	var sc streamChunk
	if err := json.Unmarshal(data, &sc); err != nil {
		return nil, fmt.Errorf("malformed chunk: %w", jsonShape(err))
	}
	if e := bytes.TrimSpace(sc.Error); len(e) > 0 && !bytes.Equal(e, []byte("null")) {
		return nil, errErrorInBody
	}
	if st.model == "" {
		st.model = sc.Model
	}
	if u := usage(sc.Usage); u != nil {
		st.usage = u
	}
	var out []*providerv1.Chunk
	for i := range sc.Choices {
		c := &sc.Choices[i]
		content, err := contentText(c.Delta.Content)
		if err != nil {
			return nil, fmt.Errorf("choice %d: %w", c.Index, err)
		}
		if content == "" {
			content = c.Delta.Refusal
		}
		ch := &providerv1.Chunk{ChoiceIndex: c.Index, Content: content}
		for j, tc := range c.Delta.ToolCalls {
			args, err := arguments(tc.Function.Arguments)
			if err != nil {
				return nil, fmt.Errorf("choice %d tool call %d: %w", c.Index, j, err)
			}
			ch.ToolCalls = append(ch.ToolCalls, &providerv1.ToolCallDelta{Index: tc.Index, Id: tc.ID, Name: tc.Function.Name, Arguments: args})
		}
		if _, seen := st.finish[c.Index]; !seen {
			st.finish[c.Index] = ""
			st.order = append(st.order, c.Index)
		}
		if c.FinishReason != nil && *c.FinishReason != "" {
			ch.FinishReason = *c.FinishReason
			st.finish[c.Index] = *c.FinishReason
		}
		if ch.Content != "" || len(ch.ToolCalls) > 0 || ch.FinishReason != "" {
			out = append(out, ch)
		}
	}
	return out, nil
}

// response is the final Response: choices by index with their finish reasons ("unknown"
// for a choice that never got one), model, usage.
func (st *streamState) response() *providerv1.Response {
	out := &providerv1.Response{Model: st.model, Usage: st.usage}
	if out.Model == "" {
		out.Model = st.fallback
	}
	idx := slices.Clone(st.order)
	slices.Sort(idx)
	for _, i := range idx {
		r := st.finish[i]
		if r == "" {
			r = "unknown"
		}
		out.Choices = append(out.Choices, &providerv1.Choice{Index: i, FinishReason: r})
	}
	return out
}

// jsonShape keeps a JSON error's description of the structure, dropping any quoted input.
func jsonShape(err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("invalid JSON at offset %d", se.Offset)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Errorf("field %q has the wrong type", te.Field)
	}
	return errors.New("invalid JSON")
}
