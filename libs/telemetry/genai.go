package telemetry

import (
	"math"
	"strings"

	"go.opentelemetry.io/otel/attribute"
)

// GenAI semantic-convention attributes (OpenTelemetry's gen_ai.* registry) that Parley
// puts on its conversation spans. They carry names, models, counts and finish reasons,
// never prompt or answer text.
const (
	// GenAISystem is the older name of GenAIProviderName; both are set, as many
	// dashboards still key on it.
	GenAISystem                = attribute.Key("gen_ai.system")
	GenAIProviderName          = attribute.Key("gen_ai.provider.name")
	GenAIOperationName         = attribute.Key("gen_ai.operation.name")
	GenAIRequestModel          = attribute.Key("gen_ai.request.model")
	GenAIResponseModel         = attribute.Key("gen_ai.response.model")
	GenAIUsageInputTokens      = attribute.Key("gen_ai.usage.input_tokens")
	GenAIUsageOutputTokens     = attribute.Key("gen_ai.usage.output_tokens")
	GenAIResponseFinishReasons = attribute.Key("gen_ai.response.finish_reasons")
)

// OperationChat is gen_ai.operation.name of a conversation.
const OperationChat = "chat"

// GenAISystemOf maps a component's provider (the part of its type after
// "conversation.") to the gen_ai.provider.name value of the semantic conventions where
// one is defined, else to the provider's own lower-case name.
func GenAISystemOf(provider string) string {
	p := strings.ToLower(strings.TrimPrefix(provider, "conversation."))
	switch p {
	case "googleai":
		return "gcp.gemini"
	case "mistral":
		return "mistral_ai"
	case "azure.openai":
		return "azure.ai.openai"
	}
	return p
}

// GenAIRequestAttrs are the attributes known before the call: the operation, the
// provider and the requested model.
func GenAIRequestAttrs(provider, model string) []attribute.KeyValue {
	sys := GenAISystemOf(provider)
	attrs := []attribute.KeyValue{
		GenAIOperationName.String(OperationChat),
		GenAISystem.String(sys),
		GenAIProviderName.String(sys),
	}
	if model != "" {
		attrs = append(attrs, GenAIRequestModel.String(model))
	}
	return attrs
}

// GenAIResponseAttrs are the attributes of an answer: the model that answered, the token
// counts and each choice's finish reason.
func GenAIResponseAttrs(model string, inputTokens, outputTokens uint64, finishReasons []string) []attribute.KeyValue {
	attrs := make([]attribute.KeyValue, 0, 4)
	if model != "" {
		attrs = append(attrs, GenAIResponseModel.String(model))
	}
	attrs = append(attrs, GenAIUsageInputTokens.Int64(clampInt64(inputTokens)), GenAIUsageOutputTokens.Int64(clampInt64(outputTokens)))
	if len(finishReasons) > 0 {
		attrs = append(attrs, GenAIResponseFinishReasons.StringSlice(finishReasons))
	}
	return attrs
}

func clampInt64(n uint64) int64 { return int64(min(n, math.MaxInt64)) } //nolint:gosec // clamped
