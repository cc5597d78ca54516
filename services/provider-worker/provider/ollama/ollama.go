// Package ollama implements conversation.ollama over Ollama's OpenAI-compatible chat
// completions API (POST http://localhost:11434/v1/chat/completions), as Dapr 1.17+ does.
package ollama

import (
	"github.com/parleyhq/parley/libs/component"
	"github.com/parleyhq/parley/services/provider-worker/provider"
	"github.com/parleyhq/parley/services/provider-worker/provider/openai"
)

// Defaults of conversation.ollama, as Dapr 1.18 has them.
const (
	// DefaultEndpoint is a local Ollama's OpenAI-compatible base URL.
	DefaultEndpoint = "http://localhost:11434/v1"
	// DefaultModel is used when neither OLLAMA_MODEL nor the model metadata is set.
	DefaultModel = "llama3.2:latest"
	// ModelEnv overrides the model of every ollama component.
	ModelEnv = "OLLAMA_MODEL"
	// DefaultKey is sent when the component has no key; Ollama ignores it.
	DefaultKey = "ollama"
)

// New returns the provider of a conversation.ollama component. Metadata: model, endpoint
// and key (optional, default "ollama"). OLLAMA_MODEL overrides the model metadata.
func New(c component.Component, opts provider.Options) (*openai.Client, error) {
	return openai.NewCompatible(c, opts, openai.Compatible{
		Name:         "ollama",
		Endpoint:     DefaultEndpoint,
		ModelEnv:     ModelEnv,
		DefaultModel: DefaultModel,
		DefaultKey:   DefaultKey,
		Dialect:      openai.CompatDialect(),
	})
}
