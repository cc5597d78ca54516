// Package mistral implements conversation.mistral over Mistral's own chat completions API
// (POST https://api.mistral.ai/v1/chat/completions), whose JSON shapes match OpenAI's for
// everything Parley sends and reads.
//
// Like Dapr, it sends assistant tool calls as the text
// "Tool call [ID: <id>]: <name>(<arguments>)" and each tool message as one user message
// "Tool response [ID: <id>, Name: <name>]: <c1>\n<c2>…", and it does not forward request
// metadata. Unlike Dapr, which reports no usage for Mistral, it maps Mistral's usage.
package mistral

import (
	"github.com/parleyhq/parley/libs/component"
	"github.com/parleyhq/parley/services/provider-worker/provider"
	"github.com/parleyhq/parley/services/provider-worker/provider/openai"
)

// Defaults of conversation.mistral, as Dapr 1.18 has them.
const (
	// DefaultEndpoint is Mistral's API base URL.
	DefaultEndpoint = "https://api.mistral.ai/v1"
	// DefaultModel is used when neither MISTRAL_MODEL nor the model metadata is set.
	DefaultModel = "open-mistral-7b"
	// ModelEnv overrides the model of every mistral component.
	ModelEnv = "MISTRAL_MODEL"
)

// Dialect is Mistral's: max_tokens, string content, no developer role, tool calls and
// results as text, no metadata, no stream_options (usage comes on the last chunk).
func Dialect() openai.Dialect {
	return openai.Dialect{ToolCallsAsText: true, NoStreamOptions: true}
}

// New returns the provider of a conversation.mistral component. Metadata: key (required),
// model and endpoint (a Parley addition, asked for in contrib#4077). MISTRAL_MODEL
// overrides the model metadata.
func New(c component.Component, opts provider.Options) (*openai.Client, error) {
	return openai.NewCompatible(c, opts, openai.Compatible{
		Name:         "mistral",
		Endpoint:     DefaultEndpoint,
		ModelEnv:     ModelEnv,
		DefaultModel: DefaultModel,
		Dialect:      Dialect(),
	})
}
