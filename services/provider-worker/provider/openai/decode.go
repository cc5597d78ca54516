package openai

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
)

var (
	errNoChoices     = errors.New("response has no choices")
	errErrorInBody   = errors.New("response carries an error object")
	errContentType   = errors.New("message content is neither a string, null nor an array of parts")
	errArgumentsType = errors.New("tool call arguments are neither a string nor a JSON value")
)

// decodeResponse parses a chat completions answer: every choice with its index, raw finish
// reason, content (a string, null, or Mistral's array of chunks whose text chunks are
// concatenated; an OpenAI refusal when there is no content) and tool calls; the model the
// provider reports (fallback when it reports none); and usage with its details (DeepSeek's
// prompt_cache_hit_tokens counts as cached tokens). Usage is nil when all three totals are
// 0, as Dapr omits it; a missing total is the sum of prompt and completion tokens.
// Error messages describe the JSON structure only, never its text.
func decodeResponse(data []byte, fallback string) (*providerv1.Response, error) {
	var r chatResponse
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, err
	}
	if len(r.Choices) == 0 {
		if e := bytes.TrimSpace(r.Error); len(e) > 0 && !bytes.Equal(e, []byte("null")) {
			return nil, errErrorInBody
		}
		return nil, errNoChoices
	}
	out := &providerv1.Response{Model: r.Model, Choices: make([]*providerv1.Choice, len(r.Choices))}
	if out.Model == "" {
		out.Model = fallback
	}
	for i := range r.Choices {
		c := &r.Choices[i]
		content, err := contentText(c.Message.Content)
		if err != nil {
			return nil, fmt.Errorf("choice %d: %w", i, err)
		}
		if content == "" {
			content = c.Message.Refusal
		}
		choice := &providerv1.Choice{Index: c.Index, FinishReason: c.FinishReason, Content: content}
		if len(c.Message.ToolCalls) > 0 {
			choice.ToolCalls = make([]*providerv1.ToolCall, len(c.Message.ToolCalls))
			for j, tc := range c.Message.ToolCalls {
				args, err := arguments(tc.Function.Arguments)
				if err != nil {
					return nil, fmt.Errorf("choice %d tool call %d: %w", i, j, err)
				}
				typ := tc.Type
				if typ == "" {
					typ = "function"
				}
				choice.ToolCalls[j] = &providerv1.ToolCall{Id: tc.ID, Type: typ, Name: tc.Function.Name, Arguments: args}
			}
		}
		out.Choices[i] = choice
	}
	out.Usage = usage(r.Usage)
	return out, nil
}

// chunk is one element of an array content.
type chunk struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

func contentText(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return "", nil
	}
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", err
		}
		return s, nil
	case '[':
		var chunks []chunk
		if err := json.Unmarshal(raw, &chunks); err != nil {
			return "", err
		}
		var b strings.Builder
		for _, c := range chunks {
			if c.Type == "text" {
				b.WriteString(c.Text)
			}
		}
		return b.String(), nil
	default:
		return "", errContentType
	}
}

// arguments returns tool call arguments as JSON text: a string as is, any other JSON
// value (an object, from servers that send one) as its compact encoding.
func arguments(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return "", nil
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", err
		}
		return s, nil
	}
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return "", errArgumentsType
	}
	return b.String(), nil
}

func usage(u *chatUsage) *providerv1.Usage {
	if u == nil {
		return nil
	}
	out := &providerv1.Usage{
		PromptTokens:       u.PromptTokens,
		CompletionTokens:   u.CompletionTokens,
		TotalTokens:        u.TotalTokens,
		PromptCachedTokens: u.PromptCacheHitTokens,
	}
	if out.TotalTokens == 0 {
		out.TotalTokens = out.PromptTokens + out.CompletionTokens
	}
	if out.PromptTokens == 0 && out.CompletionTokens == 0 && out.TotalTokens == 0 {
		return nil
	}
	if d := u.PromptTokensDetails; d != nil {
		if d.CachedTokens > 0 {
			out.PromptCachedTokens = d.CachedTokens
		}
		out.PromptAudioTokens = d.AudioTokens
	}
	if d := u.CompletionTokensDetails; d != nil {
		out.CompletionReasoningTokens = d.ReasoningTokens
		out.CompletionAudioTokens = d.AudioTokens
		out.CompletionAcceptedPredictionTokens = d.AcceptedPredictionTokens
		out.CompletionRejectedPredictionTokens = d.RejectedPredictionTokens
	}
	return out
}
