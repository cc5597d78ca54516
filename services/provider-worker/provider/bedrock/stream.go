package bedrock

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime/types"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/services/provider-worker/provider"
)

// errNoMessageStop reports a stream that ended before its messageStop event.
var errNoMessageStop = errors.New("event stream ended before messageStop")

// ConverseStream sends req to the ConverseStream API and emits the answer as it arrives:
// text deltas as content, tool uses as tool calls (id and name from contentBlockStart, then
// the input fragments; "{}" for a tool without input), the forced tool of a response_format
// as content. The finish reason comes with messageStop, the usage with the metadata event
// after it (none when the stream carries none). A stream that ends before messageStop, or
// with an exception, is an error with the classification of Converse's.
func (p *Provider) ConverseStream(ctx context.Context, req *providerv1.Request, emit func(*providerv1.Chunk) error) (*providerv1.Response, error) {
	in, responseTool, err := encodeRequest(p.model, req, func(err error) {
		p.log.WarnContext(ctx, "response_format ignored: not convertible to a json_schema",
			"provider", "bedrock", "request_id", req.GetRequestId(), "err", err)
	})
	if err != nil {
		return nil, provider.InvalidArgument(fmt.Errorf("bedrock: %w", err))
	}
	out, err := p.client.ConverseStream(ctx, &bedrockruntime.ConverseStreamInput{
		ModelId: in.ModelId, Messages: in.Messages, System: in.System,
		InferenceConfig: in.InferenceConfig, ToolConfig: in.ToolConfig,
	})
	if err != nil {
		return nil, p.streamError(ctx, err)
	}
	es := out.GetStream()
	defer func() { _ = es.Close() }()
	st := &bedrockStream{responseTool: responseTool, blocks: map[int32]*bedrockBlock{}}
	for ev := range es.Events() {
		chunk, err := st.event(ev)
		if err != nil {
			return nil, provider.Unavailable(fmt.Errorf("bedrock: %w", err), 0)
		}
		if chunk != nil {
			if err := emit(chunk); err != nil {
				return nil, err //nolint:wrapcheck // the worker's own error, returned as is
			}
		}
	}
	if err := es.Err(); err != nil {
		return nil, p.streamError(ctx, err)
	}
	if !st.stopped {
		return nil, provider.Unavailable(fmt.Errorf("bedrock: %w", errNoMessageStop), 0)
	}
	res := st.response()
	if p.modelSet {
		res.Model = p.model
	}
	return res, nil
}

// streamError classifies a failure to open or read the stream as Converse does.
func (p *Provider) streamError(ctx context.Context, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("bedrock: converse stream: %w", ctxErr)
	}
	if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
		return fmt.Errorf("bedrock: converse stream: %w", context.DeadlineExceeded)
	}
	return p.callError(err)
}

type bedrockBlock struct {
	tool       bool
	call       int32
	structured bool
	args       bool
}

type bedrockStream struct {
	responseTool string
	structured   bool
	blocks       map[int32]*bedrockBlock
	calls        int32
	stopReason   types.StopReason
	stopped      bool
	usage        *types.TokenUsage
}

// event reads one event and returns the chunk to emit, if any.
func (st *bedrockStream) event(ev types.ConverseStreamOutput) (*providerv1.Chunk, error) {
	switch e := ev.(type) {
	case *types.ConverseStreamOutputMemberContentBlockStart:
		tu, ok := e.Value.Start.(*types.ContentBlockStartMemberToolUse)
		if !ok {
			return nil, nil
		}
		if len(st.blocks) >= maxStreamBlocks {
			return nil, errors.New("too many content blocks")
		}
		b := &bedrockBlock{tool: true}
		st.blocks[aws.ToInt32(e.Value.ContentBlockIndex)] = b
		name := aws.ToString(tu.Value.Name)
		if st.responseTool != "" && !st.structured && name == st.responseTool {
			st.structured, b.structured = true, true
			return nil, nil
		}
		b.call = st.calls
		st.calls++
		return &providerv1.Chunk{ToolCalls: []*providerv1.ToolCallDelta{{Index: b.call, Id: aws.ToString(tu.Value.ToolUseId), Name: name}}}, nil
	case *types.ConverseStreamOutputMemberContentBlockDelta:
		switch d := e.Value.Delta.(type) {
		case *types.ContentBlockDeltaMemberText:
			if d.Value == "" {
				return nil, nil
			}
			return &providerv1.Chunk{Content: d.Value}, nil
		case *types.ContentBlockDeltaMemberToolUse:
			b := st.blocks[aws.ToInt32(e.Value.ContentBlockIndex)]
			if b == nil {
				return nil, errors.New("tool input for a block that did not start")
			}
			in := aws.ToString(d.Value.Input)
			if in == "" {
				return nil, nil
			}
			b.args = true
			if b.structured {
				return &providerv1.Chunk{Content: in}, nil
			}
			return &providerv1.Chunk{ToolCalls: []*providerv1.ToolCallDelta{{Index: b.call, Arguments: in}}}, nil
		}
		// Reasoning, citations and images carry no answer text.
	case *types.ConverseStreamOutputMemberContentBlockStop:
		b := st.blocks[aws.ToInt32(e.Value.ContentBlockIndex)]
		if b != nil && b.tool && !b.args {
			if b.structured {
				return &providerv1.Chunk{Content: "{}"}, nil
			}
			return &providerv1.Chunk{ToolCalls: []*providerv1.ToolCallDelta{{Index: b.call, Arguments: "{}"}}}, nil
		}
	case *types.ConverseStreamOutputMemberMessageStop:
		st.stopReason, st.stopped = e.Value.StopReason, true
		return &providerv1.Chunk{FinishReason: st.finishReason()}, nil
	case *types.ConverseStreamOutputMemberMetadata:
		st.usage = e.Value.Usage
	}
	return nil, nil
}

// maxStreamBlocks bounds the tool-use blocks of one streamed answer.
const maxStreamBlocks = 1024

func (st *bedrockStream) finishReason() string {
	r := string(st.stopReason)
	if st.structured && (r == "" || st.stopReason == types.StopReasonToolUse || st.stopReason == types.StopReasonEndTurn) {
		return "stop"
	}
	if r == "" {
		return "unknown"
	}
	return r
}

func (st *bedrockStream) response() *providerv1.Response {
	res := &providerv1.Response{Choices: []*providerv1.Choice{{Index: 0, FinishReason: st.finishReason()}}}
	if u := st.usage; u != nil {
		prompt := nonNegative(u.InputTokens) + nonNegative(u.CacheReadInputTokens) + nonNegative(u.CacheWriteInputTokens)
		completion := nonNegative(u.OutputTokens)
		res.Usage = &providerv1.Usage{
			PromptTokens:       prompt,
			CompletionTokens:   completion,
			TotalTokens:        max(nonNegative(u.TotalTokens), prompt+completion),
			PromptCachedTokens: nonNegative(u.CacheReadInputTokens),
		}
	}
	return res
}
