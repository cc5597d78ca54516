// Package googleai implements conversation.googleai over Gemini's OpenAI-compatible chat
// completions API (POST https://generativelanguage.googleapis.com/v1beta/openai/chat/completions),
// as Dapr 1.16+ does.
package googleai

import (
	"github.com/parleyhq/parley/libs/component"
	"github.com/parleyhq/parley/services/provider-worker/provider"
	"github.com/parleyhq/parley/services/provider-worker/provider/openai"
)

// Defaults of conversation.googleai, as Dapr 1.18 has them.
const (
	// DefaultEndpoint is Gemini's OpenAI-compatible base URL.
	DefaultEndpoint = "https://generativelanguage.googleapis.com/v1beta/openai/"
	// DefaultModel is used when neither GOOGLEAI_MODEL nor the model metadata is set.
	DefaultModel = "gemini-2.5-flash-lite"
	// ModelEnv overrides the model of every googleai component.
	ModelEnv = "GOOGLEAI_MODEL"
)

// New returns the provider of a conversation.googleai component. Metadata: key
// (required), model and endpoint (a Parley addition; Dapr's endpoint is fixed).
// GOOGLEAI_MODEL overrides the model metadata. The key goes in the Authorization header,
// never in the URL.
func New(c component.Component, opts provider.Options) (*openai.Client, error) {
	return openai.NewCompatible(c, opts, openai.Compatible{
		Name:         "googleai",
		Endpoint:     DefaultEndpoint,
		ModelEnv:     ModelEnv,
		DefaultModel: DefaultModel,
		Dialect:      openai.CompatDialect(),
	})
}
