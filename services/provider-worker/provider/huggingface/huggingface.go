// Package huggingface implements conversation.huggingface over the OpenAI-compatible chat
// completions API of Hugging Face's inference router, as Dapr 1.16+ does
// (POST https://router.huggingface.co/hf-inference/models/{model}/v1/chat/completions).
package huggingface

import (
	"github.com/parleyhq/parley/libs/component"
	"github.com/parleyhq/parley/services/provider-worker/provider"
	"github.com/parleyhq/parley/services/provider-worker/provider/openai"
)

// Defaults of conversation.huggingface, as Dapr 1.18 has them.
const (
	// DefaultEndpoint is the router's base URL; {{model}} is replaced by the model.
	DefaultEndpoint = "https://router.huggingface.co/hf-inference/models/{{model}}/v1"
	// DefaultModel is used when neither HUGGINGFACE_MODEL nor the model metadata is set.
	DefaultModel = "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B"
	// ModelEnv overrides the model of every huggingface component.
	ModelEnv = "HUGGINGFACE_MODEL"
)

// New returns the provider of a conversation.huggingface component. Metadata: key
// (required), model and endpoint ({{model}} in it is replaced by the model).
// HUGGINGFACE_MODEL overrides the model metadata.
func New(c component.Component, opts provider.Options) (*openai.Client, error) {
	return openai.NewCompatible(c, opts, openai.Compatible{
		Name:         "huggingface",
		Endpoint:     DefaultEndpoint,
		ModelEnv:     ModelEnv,
		DefaultModel: DefaultModel,
		Dialect:      openai.CompatDialect(),
	})
}
