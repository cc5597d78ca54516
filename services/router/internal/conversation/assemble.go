package conversation

import (
	"slices"
	"strings"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
)

// Assembly puts a streamed answer back together from its chunks: each choice's content
// and its tool calls (id and name from their first piece, argument fragments joined).
type Assembly struct {
	choices map[int64]*assembled
}

type assembled struct {
	content strings.Builder
	calls   []*providerv1.ToolCall
	finish  string
}

// Add takes the next chunk.
func (a *Assembly) Add(c *providerv1.Chunk) {
	if a.choices == nil {
		a.choices = map[int64]*assembled{}
	}
	ch := a.choices[c.GetChoiceIndex()]
	if ch == nil {
		ch = &assembled{}
		a.choices[c.GetChoiceIndex()] = ch
	}
	ch.content.WriteString(c.GetContent())
	for _, d := range c.GetToolCalls() {
		i := int(d.GetIndex())
		if i < 0 || i > maxToolCalls {
			continue
		}
		for len(ch.calls) <= i {
			ch.calls = append(ch.calls, &providerv1.ToolCall{Type: "function"})
		}
		tc := ch.calls[i]
		if d.GetId() != "" {
			tc.Id = d.GetId()
		}
		if d.GetName() != "" {
			tc.Name = d.GetName()
		}
		tc.Arguments += d.GetArguments()
	}
	if r := c.GetFinishReason(); r != "" {
		ch.finish = r
	}
}

// maxToolCalls bounds the tool-call index a chunk may name, so a bad index cannot make the
// assembly allocate without bound.
const maxToolCalls = 1024

// Response is the whole answer: final's model, usage and worker fields, with every
// choice's content and tool calls from the chunks, and its finish reason from final (or
// from its last chunk when final has none).
func (a *Assembly) Response(final *providerv1.Response) *providerv1.Response {
	out := &providerv1.Response{
		Model: final.GetModel(), Usage: final.GetUsage(), WorkerId: final.GetWorkerId(),
		ProviderLatency: final.GetProviderLatency(), Attempts: final.GetAttempts(),
	}
	finish := map[int64]string{}
	idx := make([]int64, 0, len(a.choices))
	for i := range a.choices {
		idx = append(idx, i)
	}
	for _, c := range final.GetChoices() {
		finish[c.GetIndex()] = c.GetFinishReason()
		if _, ok := a.choices[c.GetIndex()]; !ok {
			idx = append(idx, c.GetIndex())
		}
	}
	slices.Sort(idx)
	for _, i := range idx {
		c := &providerv1.Choice{Index: i, FinishReason: finish[i]}
		if ch := a.choices[i]; ch != nil {
			c.Content = ch.content.String()
			c.ToolCalls = ch.calls
			if c.FinishReason == "" {
				c.FinishReason = ch.finish
			}
		}
		if c.FinishReason == "" {
			c.FinishReason = "unknown"
		}
		out.Choices = append(out.Choices, c)
	}
	return out
}

// ChunksOf is a whole answer as a stream, numbered from 1: one chunk per choice with its
// content, its tool calls and its finish reason (a cache hit, a dispatcher that cannot
// stream, a worker that answered whole).
func ChunksOf(resp *providerv1.Response) []*providerv1.Chunk {
	out := make([]*providerv1.Chunk, 0, len(resp.GetChoices()))
	for i, c := range resp.GetChoices() {
		ch := &providerv1.Chunk{Seq: uint64(i + 1), ChoiceIndex: c.GetIndex(), Content: c.GetContent(), FinishReason: c.GetFinishReason()} //nolint:gosec // i >= 0
		for j, tc := range c.GetToolCalls() {
			ch.ToolCalls = append(ch.ToolCalls, &providerv1.ToolCallDelta{Index: int32(j), Id: tc.GetId(), Name: tc.GetName(), Arguments: tc.GetArguments()}) //nolint:gosec // a handful
		}
		out = append(out, ch)
	}
	return out
}
