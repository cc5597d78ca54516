// Package providertext finds the texts of a provider request and answer that PII
// scrubbing reads and rewrites: text parts, tool results and tool-call arguments of the
// request's messages, and each choice's content and tool-call arguments in the answer.
// The router scrubs them for the caller and for the audit copy; the audit service scrubs
// the audit copies the router sealed to it. Both walk the same texts in the same order.
package providertext

import (
	"encoding/json"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
)

// Ref points at one scrubbable text of a request: a text part, a tool result, or the
// arguments of a tool call in the history.
type Ref struct {
	// Msg is the index of the message the text is in.
	Msg  int
	part *providerv1.Part
}

// Text is the text Ref points at.
func (r Ref) Text() string {
	switch k := r.part.GetKind().(type) {
	case *providerv1.Part_Text:
		return k.Text
	case *providerv1.Part_ToolResult:
		return k.ToolResult.GetContent()
	case *providerv1.Part_ToolCall:
		return k.ToolCall.GetArguments()
	}
	return ""
}

// Set replaces the text Ref points at.
func (r Ref) Set(s string) {
	switch k := r.part.GetKind().(type) {
	case *providerv1.Part_Text:
		k.Text = s
	case *providerv1.Part_ToolResult:
		k.ToolResult.Content = s
	case *providerv1.Part_ToolCall:
		k.ToolCall.Arguments = s
	}
}

// JSON reports whether the scrubber is to read the text as JSON (the output stays valid
// JSON): tool-call arguments, and tool results that are valid JSON; everything else is
// text.
func (r Ref) JSON() bool {
	switch k := r.part.GetKind().(type) {
	case *providerv1.Part_ToolCall:
		return true
	case *providerv1.Part_ToolResult:
		return json.Valid([]byte(k.ToolResult.GetContent()))
	}
	return false
}

// Inputs returns the scrubbable texts of p in message order.
func Inputs(p *providerv1.Request) []Ref {
	var refs []Ref
	for i, m := range p.GetMessages() {
		for _, part := range m.GetParts() {
			switch k := part.GetKind().(type) {
			case *providerv1.Part_Text, *providerv1.Part_ToolResult:
				refs = append(refs, Ref{Msg: i, part: part})
			case *providerv1.Part_ToolCall:
				if k.ToolCall.GetArguments() != "" {
					refs = append(refs, Ref{Msg: i, part: part})
				}
			}
		}
	}
	return refs
}

// Output is one scrubbable text of an answer: a choice's content (Call < 0) or the
// arguments of one of its tool calls.
type Output struct {
	Choice, Call int
	Text         string
}

// JSON reports whether the text is read as JSON: tool-call arguments are.
func (o Output) JSON() bool { return o.Call >= 0 }

// Outputs returns the non-empty scrubbable texts of resp in choice order.
func Outputs(resp *providerv1.Response) []Output {
	var out []Output
	for i, c := range resp.GetChoices() {
		if c.GetContent() != "" {
			out = append(out, Output{Choice: i, Call: -1, Text: c.GetContent()})
		}
		for j, tc := range c.GetToolCalls() {
			if tc.GetArguments() != "" {
				out = append(out, Output{Choice: i, Call: j, Text: tc.GetArguments()})
			}
		}
	}
	return out
}

// SetOutputs writes texts[i] in place of outs[i] in resp for every outs[i] that want
// selects (nil selects all). outs must come from Outputs(resp).
func SetOutputs(resp *providerv1.Response, outs []Output, texts []string, want func(Output) bool) {
	for i, o := range outs {
		if want != nil && !want(o) {
			continue
		}
		c := resp.GetChoices()[o.Choice]
		if o.Call < 0 {
			c.Content = texts[i]
		} else {
			c.GetToolCalls()[o.Call].Arguments = texts[i]
		}
	}
}
