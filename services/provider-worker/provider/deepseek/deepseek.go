// Package deepseek implements conversation.deepseek over DeepSeek's OpenAI-compatible chat
// completions API (POST https://api.deepseek.com/chat/completions).
package deepseek

import (
	"github.com/parleyhq/parley/libs/component"
	"github.com/parleyhq/parley/services/provider-worker/provider"
	"github.com/parleyhq/parley/services/provider-worker/provider/openai"
)

// Defaults of conversation.deepseek, as Dapr 1.18 has them.
const (
	// DefaultEndpoint is DeepSeek's API base URL.
	DefaultEndpoint = "https://api.deepseek.com"
	// DefaultModel is used when the model metadata is not set (Dapr reads no variable).
	DefaultModel = "deepseek-chat"
)

// New returns the provider of a conversation.deepseek component. Metadata: key
// (required), model, endpoint and maxTokens, the default max_tokens of every request that
// sets none (Dapr parses it but has ignored it since 1.16; Parley honours it, as Dapr 1.15
// did).
func New(c component.Component, opts provider.Options) (*openai.Client, error) {
	return openai.NewCompatible(c, opts, openai.Compatible{
		Name:              "deepseek",
		Endpoint:          DefaultEndpoint,
		DefaultModel:      DefaultModel,
		MaxTokensMetadata: true,
		Dialect:           openai.CompatDialect(),
	})
}
