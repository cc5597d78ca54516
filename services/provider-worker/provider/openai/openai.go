// Package openai implements conversation.openai (OpenAI and Azure OpenAI) over the Chat
// Completions API with plain net/http, and provides the client that every
// OpenAI-compatible component type reuses (deepseek, googleai, huggingface, ollama and,
// with its own dialect, mistral).
//
// The request follows Dapr's langchaingo-based components: roles, text parts, tool calls
// and results, tools, tool_choice (any → required), temperature only when > 0, stop,
// response_format as json_schema per Dapr's convertToStructuredOutputDefinition, metadata
// forwarded with prompt_cache_retention added. The answer keeps raw finish reasons, the
// model the provider reports and the whole usage, including cached and reasoning tokens.
package openai

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/parleyhq/parley/libs/component"
	"github.com/parleyhq/parley/services/provider-worker/provider"
)

// Defaults of conversation.openai, as Dapr 1.18 has them.
const (
	// DefaultEndpoint is OpenAI's API base URL.
	DefaultEndpoint = "https://api.openai.com/v1"
	// DefaultModel is used when neither OPENAI_MODEL nor the model metadata is set.
	DefaultModel = "gpt-5-nano"
	// ModelEnv overrides the model of every OpenAI component.
	ModelEnv = "OPENAI_MODEL"
	// DefaultAzureModel is used with apiType azure when neither AZURE_OPENAI_MODEL nor the
	// model metadata is set.
	DefaultAzureModel = "gpt-4.1-nano"
	// AzureModelEnv overrides the model (the deployment) of every Azure OpenAI component.
	AzureModelEnv = "AZURE_OPENAI_MODEL"
)

// errAzureConfig is Dapr's init error, word for word.
var errAzureConfig = errors.New("endpoint and apiVersion must be provided when apiType is set to 'azure'")

// New returns the provider of a conversation.openai component. Metadata: key (required),
// model, endpoint (base URL, default https://api.openai.com/v1), apiType ("openai",
// "open_ai" or empty; or "azure", case-insensitive) and, for azure, endpoint and
// apiVersion (both required). OPENAI_MODEL (AZURE_OPENAI_MODEL for azure) overrides the
// model metadata, as in Dapr.
func New(c component.Component, opts provider.Options) (*Client, error) {
	apiType, _ := provider.Metadata(c, "apiType")
	switch strings.ToLower(apiType) {
	case "", "openai", "open_ai":
		return NewCompatible(c, opts, Compatible{
			Name:         "openai",
			Endpoint:     DefaultEndpoint,
			ModelEnv:     ModelEnv,
			DefaultModel: DefaultModel,
			Dialect:      OpenAIDialect(),
		})
	case "azure":
		return newAzure(c, opts)
	default:
		return nil, fmt.Errorf("openai: apiType %q: must be openai or azure", apiType)
	}
}

// newAzure builds the Azure OpenAI client:
// POST {endpoint}/openai/deployments/{model}/chat/completions?api-version={apiVersion},
// key in the api-key header.
func newAzure(c component.Component, opts provider.Options) (*Client, error) {
	endpoint, okE := provider.Metadata(c, "endpoint")
	apiVersion, okV := provider.Metadata(c, "apiVersion")
	if !okE || !okV {
		return nil, fmt.Errorf("azure openai: %w", errAzureConfig)
	}
	key, ok := provider.Metadata(c, "key")
	if !ok {
		return nil, errors.New(`azure openai: metadata "key" is required`)
	}
	u, err := provider.ParseEndpoint(endpoint, opts.EndpointAllowlist)
	if err != nil {
		return nil, fmt.Errorf("azure openai: metadata endpoint: %w", err)
	}
	model := opts.Model(c, AzureModelEnv, DefaultAzureModel)
	u = u.JoinPath("openai", "deployments", url.PathEscape(model), "chat", "completions")
	u.RawQuery = url.Values{"api-version": {apiVersion}}.Encode()
	return NewClient(Config{
		Name:       "azure openai",
		URL:        u,
		AuthHeader: "api-key",
		Key:        key,
		Model:      model,
		Dialect:    OpenAIDialect(),
	}, opts)
}

// Compatible describes the defaults of a component type served by an OpenAI-compatible
// chat completions API.
type Compatible struct {
	// Name names the provider in errors.
	Name string
	// Endpoint is the default base URL; "{{model}}" in it (or in the endpoint metadata)
	// is replaced by the model. POST goes to {base}/chat/completions.
	Endpoint string
	// ModelEnv, when set, names the variable that overrides the model metadata.
	ModelEnv string
	// DefaultModel is used when neither the variable nor the metadata sets a model.
	DefaultModel string
	// DefaultKey is used when the key metadata is absent; empty makes the key required.
	DefaultKey string
	// MaxTokensMetadata honours the maxTokens metadata as the default token cap.
	MaxTokensMetadata bool
	// Dialect selects the wire differences.
	Dialect Dialect
}

// NewCompatible returns the client of a component of an OpenAI-compatible type with the
// defaults d: metadata key, model, endpoint (and maxTokens when d allows it). The key is
// sent as "Authorization: Bearer <key>".
func NewCompatible(c component.Component, opts provider.Options, d Compatible) (*Client, error) {
	key, ok := provider.Metadata(c, "key")
	if !ok {
		key = d.DefaultKey
	}
	if key == "" {
		return nil, fmt.Errorf(`%s: metadata "key" is required`, d.Name)
	}
	model := opts.Model(c, d.ModelEnv, d.DefaultModel)
	endpoint := d.Endpoint
	if v, ok := provider.Metadata(c, "endpoint"); ok {
		endpoint = v
	}
	endpoint = strings.ReplaceAll(endpoint, "{{model}}", model)
	u, err := provider.ParseEndpoint(endpoint, opts.EndpointAllowlist)
	if err != nil {
		return nil, fmt.Errorf("%s: metadata endpoint: %w", d.Name, err)
	}
	var maxTokens int64
	if v, ok := provider.Metadata(c, "maxTokens"); ok && d.MaxTokensMetadata {
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("%s: metadata maxTokens: %q is not a non-negative integer", d.Name, v)
		}
		maxTokens = n
	}
	return NewClient(Config{
		Name:             d.Name,
		URL:              u.JoinPath("chat", "completions"),
		AuthHeader:       "Authorization",
		Key:              key,
		Model:            model,
		DefaultMaxTokens: maxTokens,
		Dialect:          d.Dialect,
	}, opts)
}
