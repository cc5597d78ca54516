package openaiapi

import (
	"strconv"
	"strings"
	"time"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/services/router/internal/conversation"
)

// completion is OpenAI's chat.completion object.
type completion struct {
	ID                string   `json:"id"`
	Object            string   `json:"object"`
	Created           int64    `json:"created"`
	Model             string   `json:"model"`
	Choices           []choice `json:"choices"`
	Usage             usage    `json:"usage"`
	SystemFingerprint *string  `json:"system_fingerprint"`
}

type choice struct {
	Index        int64           `json:"index"`
	Message      responseMessage `json:"message"`
	Logprobs     *struct{}       `json:"logprobs"`
	FinishReason string          `json:"finish_reason"`
}

type responseMessage struct {
	Role        string             `json:"role"`
	Content     *string            `json:"content"`
	Refusal     *string            `json:"refusal"`
	ToolCalls   []responseToolCall `json:"tool_calls,omitempty"`
	Annotations []struct{}         `json:"annotations"`
}

type responseToolCall struct {
	ID       string       `json:"id"`
	Type     string       `json:"type"`
	Function functionCall `json:"function"`
}

type usage struct {
	PromptTokens            uint64            `json:"prompt_tokens"`
	CompletionTokens        uint64            `json:"completion_tokens"`
	TotalTokens             uint64            `json:"total_tokens"`
	PromptTokensDetails     promptDetails     `json:"prompt_tokens_details"`
	CompletionTokensDetails completionDetails `json:"completion_tokens_details"`
}

type promptDetails struct {
	CachedTokens uint64 `json:"cached_tokens"`
	AudioTokens  uint64 `json:"audio_tokens"`
}

type completionDetails struct {
	ReasoningTokens          uint64 `json:"reasoning_tokens"`
	AudioTokens              uint64 `json:"audio_tokens"`
	AcceptedPredictionTokens uint64 `json:"accepted_prediction_tokens"`
	RejectedPredictionTokens uint64 `json:"rejected_prediction_tokens"`
}

// CompletionIDPrefix starts every completion id; the request id of the audit log follows.
const CompletionIDPrefix = "chatcmpl-"

// toCompletion builds the answer to a request for model (the component's name). The
// model field is the provider's model when it reported one.
func toCompletion(model string, res *conversation.Result, now time.Time) *completion {
	resp := res.Response
	out := &completion{
		ID:      CompletionIDPrefix + res.RequestID,
		Object:  "chat.completion",
		Created: now.Unix(),
		Model:   model,
		Choices: make([]choice, 0, len(resp.GetChoices())),
		Usage:   toUsage(resp.GetUsage()),
	}
	if m := resp.GetModel(); m != "" {
		out.Model = m
	}
	for _, c := range resp.GetChoices() {
		msg := responseMessage{Role: "assistant", Annotations: []struct{}{}}
		for i, tc := range c.GetToolCalls() {
			id := tc.GetId()
			if id == "" {
				// OpenAI's clients answer a call by its id: a provider without ids gets
				// ones unique within the answer.
				id = "call_" + strconv.FormatInt(c.GetIndex(), 10) + "_" + strconv.Itoa(i)
			}
			msg.ToolCalls = append(msg.ToolCalls, responseToolCall{ID: id, Type: "function",
				Function: functionCall{Name: tc.GetName(), Arguments: tc.GetArguments()}})
		}
		if content := c.GetContent(); content != "" || len(msg.ToolCalls) == 0 {
			msg.Content = &content
		}
		out.Choices = append(out.Choices, choice{Index: c.GetIndex(), Message: msg, FinishReason: FinishReason(c)})
	}
	return out
}

func toUsage(u *providerv1.Usage) usage {
	return usage{
		PromptTokens: u.GetPromptTokens(), CompletionTokens: u.GetCompletionTokens(), TotalTokens: u.GetTotalTokens(),
		PromptTokensDetails: promptDetails{CachedTokens: u.GetPromptCachedTokens(), AudioTokens: u.GetPromptAudioTokens()},
		CompletionTokensDetails: completionDetails{
			ReasoningTokens: u.GetCompletionReasoningTokens(), AudioTokens: u.GetCompletionAudioTokens(),
			AcceptedPredictionTokens: u.GetCompletionAcceptedPredictionTokens(), RejectedPredictionTokens: u.GetCompletionRejectedPredictionTokens(),
		},
	}
}

// FinishReason maps a provider's raw stop reason to OpenAI's four: length when the token
// limit cut the answer, content_filter when a safety filter stopped it, tool_calls when
// the model called tools, stop otherwise (OpenAI's, Anthropic's, Gemini's, Bedrock's,
// Mistral's and Ollama's names).
func FinishReason(c *providerv1.Choice) string {
	switch strings.ToLower(c.GetFinishReason()) {
	case "length", "max_tokens", "model_length", "max_output_tokens":
		return "length"
	case "content_filter", "content_filtered", "safety", "recitation", "blocklist", "prohibited_content",
		"spii", "guardrail_intervened", "refusal", "image_safety":
		return "content_filter"
	case "tool_calls", "tool_use", "function_call":
		return "tool_calls"
	}
	if len(c.GetToolCalls()) > 0 {
		return "tool_calls"
	}
	return "stop"
}
