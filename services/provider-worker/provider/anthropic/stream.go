package anthropic

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/services/provider-worker/provider"
)

// errNoStop reports a stream that ended before its message_stop event.
var errNoStop = errors.New("event stream ended before message_stop")

// ConverseStream sends req with "stream": true and emits the answer as Anthropic's event
// stream produces it: text deltas as content, tool_use blocks as tool calls (id and name
// from content_block_start, then the input_json_delta fragments; "{}" for a tool without
// input), the forced tool of a response_format as content. The usage is split over the
// stream: input and cache tokens in message_start, output tokens in message_delta; the
// final Response sums them as Converse does, and has none when neither came. An error
// event, a malformed event and a stream that ends before message_stop are UNAVAILABLE
// errors naming the event's number and type, never its text.
func (p *Provider) ConverseStream(ctx context.Context, req *providerv1.Request, emit func(*providerv1.Chunk) error) (*providerv1.Response, error) {
	body, responseTool, err := encode(p.model, req, func(err error) {
		p.log.WarnContext(ctx, "response_format ignored: not convertible to a json_schema",
			"provider", "anthropic", "request_id", req.GetRequestId(), "err", err)
	}, true)
	if err != nil {
		return nil, provider.InvalidArgument(fmt.Errorf("anthropic: %w", err))
	}
	resp, err := p.send(ctx, body, "text/event-stream")
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return nil, provider.HTTPError("anthropic", resp.StatusCode, resp.Header, provider.ParseAPIError(data), p.now())
	}
	st := &streamState{responseTool: responseTool, blocks: map[int]*blockState{}}
	sse := provider.NewSSEReader(io.LimitReader(resp.Body, maxResponseBytes))
	for {
		ev, err := sse.Next()
		if errors.Is(err, io.EOF) {
			return nil, provider.Unavailable(fmt.Errorf("anthropic: %w (after %d events)", errNoStop, sse.Events()), 0)
		}
		if err != nil {
			if ctxErr := ctx.Err(); ctxErr != nil {
				return nil, fmt.Errorf("anthropic: read event stream: %w", ctxErr)
			}
			return nil, provider.Unavailable(fmt.Errorf("anthropic: read event stream: %w", err), 0)
		}
		chunk, done, err := st.event(ev.Data)
		if err != nil {
			return nil, provider.Unavailable(fmt.Errorf("anthropic: event %d: %w", sse.Events(), err), 0)
		}
		if chunk != nil {
			if err := emit(chunk); err != nil {
				return nil, err //nolint:wrapcheck // the worker's own error, returned as is
			}
		}
		if done {
			return st.response(), nil
		}
	}
}

// streamEvent is one event of the Messages API's stream, the fields Parley reads.
type streamEvent struct {
	Type    string `json:"type"`
	Index   int    `json:"index"`
	Message *struct {
		Model string `json:"model"`
		Usage *usage `json:"usage"`
	} `json:"message"`
	ContentBlock *responseBlock `json:"content_block"`
	Delta        *struct {
		Type        string `json:"type"`
		Text        string `json:"text"`
		PartialJSON string `json:"partial_json"`
		StopReason  string `json:"stop_reason"`
	} `json:"delta"`
	Usage *usage `json:"usage"`
	Error *struct {
		Type string `json:"type"`
	} `json:"error"`
}

// blockState is one content block being streamed.
type blockState struct {
	kind       string // blockText, blockToolUse, or another (ignored)
	call       int32  // the tool call's index, for tool_use
	structured bool   // the response_format's forced tool: its input is the content
	args       bool   // input fragments were sent
}

type streamState struct {
	responseTool string
	structured   bool // the forced tool's block was seen
	blocks       map[int]*blockState
	calls        int32
	model        string
	stopReason   string
	input        *usage // from message_start
	output       *usage // from message_delta
}

// event reads one event: the chunk to emit, if any, and whether the message ended.
func (st *streamState) event(data []byte) (*providerv1.Chunk, bool, error) {
	var ev streamEvent
	if err := json.Unmarshal(data, &ev); err != nil {
		return nil, false, jsonError(err)
	}
	switch ev.Type {
	case "message_start":
		if ev.Message != nil {
			st.model = ev.Message.Model
			st.input = ev.Message.Usage
		}
	case "content_block_start":
		if ev.ContentBlock == nil || len(st.blocks) >= maxBlocks {
			return nil, false, errors.New("content_block_start without a usable block")
		}
		b := &blockState{kind: ev.ContentBlock.Type}
		st.blocks[ev.Index] = b
		if b.kind != blockToolUse {
			return nil, false, nil
		}
		if st.responseTool != "" && !st.structured && ev.ContentBlock.Name == st.responseTool {
			st.structured, b.structured = true, true
			return nil, false, nil
		}
		b.call = st.calls
		st.calls++
		return &providerv1.Chunk{ToolCalls: []*providerv1.ToolCallDelta{{Index: b.call, Id: ev.ContentBlock.ID, Name: ev.ContentBlock.Name}}}, false, nil
	case "content_block_delta":
		b := st.blocks[ev.Index]
		if b == nil || ev.Delta == nil {
			return nil, false, errors.New("content_block_delta for a block that did not start")
		}
		switch {
		case ev.Delta.Type == "text_delta" && b.kind == blockText && ev.Delta.Text != "":
			return &providerv1.Chunk{Content: ev.Delta.Text}, false, nil
		case ev.Delta.Type == "input_json_delta" && b.kind == blockToolUse && ev.Delta.PartialJSON != "":
			b.args = true
			if b.structured {
				return &providerv1.Chunk{Content: ev.Delta.PartialJSON}, false, nil
			}
			return &providerv1.Chunk{ToolCalls: []*providerv1.ToolCallDelta{{Index: b.call, Arguments: ev.Delta.PartialJSON}}}, false, nil
		}
		// thinking, signature and citations deltas carry no answer text.
	case "content_block_stop":
		b := st.blocks[ev.Index]
		if b != nil && b.kind == blockToolUse && !b.args {
			if b.structured {
				return &providerv1.Chunk{Content: "{}"}, false, nil
			}
			return &providerv1.Chunk{ToolCalls: []*providerv1.ToolCallDelta{{Index: b.call, Arguments: "{}"}}}, false, nil
		}
	case "message_delta":
		if ev.Delta != nil && ev.Delta.StopReason != "" {
			st.stopReason = ev.Delta.StopReason
		}
		if ev.Usage != nil {
			st.output = ev.Usage
		}
	case "message_stop":
		return &providerv1.Chunk{FinishReason: st.finishReason()}, true, nil
	case "error":
		typ := "unknown"
		if ev.Error != nil && ev.Error.Type != "" {
			typ = ev.Error.Type
		}
		return nil, false, fmt.Errorf("error event of type %q", typ)
	}
	// ping and event types added later are ignored, as the API asks.
	return nil, false, nil
}

// maxBlocks bounds the content blocks of one streamed message.
const maxBlocks = 1024

func (st *streamState) finishReason() string {
	r := st.stopReason
	if st.structured && (r == "" || r == "tool_use" || r == "end_turn") {
		return "stop"
	}
	if r == "" {
		return "unknown"
	}
	return r
}

// response is the final Response: the finish reason, the model, the usage of both halves.
func (st *streamState) response() *providerv1.Response {
	out := &providerv1.Response{Model: st.model, Choices: []*providerv1.Choice{{Index: 0, FinishReason: st.finishReason()}}}
	if st.input == nil && st.output == nil {
		return out
	}
	var u usage
	if st.input != nil {
		u = *st.input
	}
	if st.output != nil {
		u.OutputTokens = st.output.OutputTokens
		// message_delta repeats the input counts when the server knows them better.
		if st.output.InputTokens > 0 {
			u.InputTokens = st.output.InputTokens
		}
		if st.output.CacheReadInputTokens > 0 {
			u.CacheReadInputTokens = st.output.CacheReadInputTokens
		}
		if st.output.CacheCreationInputTokens > 0 {
			u.CacheCreationInputTokens = st.output.CacheCreationInputTokens
		}
	}
	prompt := u.InputTokens + u.CacheCreationInputTokens + u.CacheReadInputTokens
	out.Usage = &providerv1.Usage{
		PromptTokens: prompt, CompletionTokens: u.OutputTokens, TotalTokens: prompt + u.OutputTokens,
		PromptCachedTokens: u.CacheReadInputTokens,
	}
	return out
}
