package openai

import "encoding/json"

// The JSON shapes of the Chat Completions API
// (https://platform.openai.com/docs/api-reference/chat/create), reduced to what Parley
// sends and reads. Mistral's chat API (https://docs.mistral.ai/api/#tag/chat) and the
// OpenAI-compatible endpoints of DeepSeek, Gemini, Hugging Face and Ollama share them.

// chatRequest is the body of POST …/chat/completions.
type chatRequest struct {
	Model               string            `json:"model"`
	Messages            []chatMessage     `json:"messages"`
	Temperature         float64           `json:"temperature,omitempty"`
	MaxTokens           int64             `json:"max_tokens,omitempty"`
	MaxCompletionTokens int64             `json:"max_completion_tokens,omitempty"`
	Stop                []string          `json:"stop,omitempty"`
	Tools               []chatTool        `json:"tools,omitempty"`
	ToolChoice          any               `json:"tool_choice,omitempty"`
	ResponseFormat      *responseFormat   `json:"response_format,omitempty"`
	Metadata            map[string]string `json:"metadata,omitempty"`
	Stream              bool              `json:"stream,omitempty"`
	StreamOptions       *streamOptions    `json:"stream_options,omitempty"`
}

// streamOptions asks a streamed answer for a last chunk with the usage.
type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

// chatMessage is one message of the history. Content is a string, a []textPart, or nil
// (an assistant message that only calls tools).
type chatMessage struct {
	Role       string     `json:"role"`
	Content    any        `json:"content,omitempty"`
	ToolCalls  []toolCall `json:"tool_calls,omitempty"`
	ToolCallID string     `json:"tool_call_id,omitempty"`
}

// textPart is a content part of type text.
type textPart struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

// toolCall is a function call, in an assistant message of the request.
type toolCall struct {
	ID       string       `json:"id"`
	Type     string       `json:"type"`
	Function functionCall `json:"function"`
}

type functionCall struct {
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
}

// chatTool is a function the model may call.
type chatTool struct {
	Type     string      `json:"type"`
	Function functionDef `json:"function"`
}

type functionDef struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	Parameters  any    `json:"parameters,omitempty"`
}

// namedToolChoice forces one function: {"type":"function","function":{"name":…}}.
type namedToolChoice struct {
	Type     string       `json:"type"`
	Function functionName `json:"function"`
}

type functionName struct {
	Name string `json:"name"`
}

// responseFormat asks for structured output:
// {"type":"json_schema","json_schema":{"name","description","schema","strict"}}.
type responseFormat struct {
	Type       string      `json:"type"`
	JSONSchema *jsonSchema `json:"json_schema,omitempty"`
}

// jsonSchema is the converted schema (provider.ConvertResponseFormat: the subset Dapr's
// convertToStructuredOutputDefinition keeps).
type jsonSchema struct {
	Name        string         `json:"name"`
	Description string         `json:"description,omitempty"`
	Schema      map[string]any `json:"schema"`
	Strict      bool           `json:"strict"`
}

// chatResponse is the body of a successful answer.
type chatResponse struct {
	Model   string          `json:"model"`
	Choices []chatChoice    `json:"choices"`
	Usage   *chatUsage      `json:"usage"`
	Error   json.RawMessage `json:"error"`
}

type chatChoice struct {
	Index        int64           `json:"index"`
	Message      responseMessage `json:"message"`
	FinishReason string          `json:"finish_reason"`
}

type responseMessage struct {
	// Content is a string or null (OpenAI), or an array of chunks (Mistral's reasoning
	// models: [{"type":"thinking",…},{"type":"text","text":…}]).
	Content   json.RawMessage    `json:"content"`
	Refusal   string             `json:"refusal"`
	ToolCalls []responseToolCall `json:"tool_calls"`
}

type responseToolCall struct {
	ID       string `json:"id"`
	Type     string `json:"type"`
	Function struct {
		Name string `json:"name"`
		// Arguments is JSON text in a string (OpenAI) or, from some servers, an object.
		Arguments json.RawMessage `json:"arguments"`
	} `json:"function"`
}

type chatUsage struct {
	PromptTokens        uint64 `json:"prompt_tokens"`
	CompletionTokens    uint64 `json:"completion_tokens"`
	TotalTokens         uint64 `json:"total_tokens"`
	PromptTokensDetails *struct {
		CachedTokens uint64 `json:"cached_tokens"`
		AudioTokens  uint64 `json:"audio_tokens"`
	} `json:"prompt_tokens_details"`
	CompletionTokensDetails *struct {
		ReasoningTokens          uint64 `json:"reasoning_tokens"`
		AudioTokens              uint64 `json:"audio_tokens"`
		AcceptedPredictionTokens uint64 `json:"accepted_prediction_tokens"`
		RejectedPredictionTokens uint64 `json:"rejected_prediction_tokens"`
	} `json:"completion_tokens_details"`
	// PromptCacheHitTokens is DeepSeek's count of prompt tokens served from its cache.
	PromptCacheHitTokens uint64 `json:"prompt_cache_hit_tokens"`
}

// streamChunk is one chat.completion.chunk event of a streamed answer.
type streamChunk struct {
	Model   string          `json:"model"`
	Choices []streamChoice  `json:"choices"`
	Usage   *chatUsage      `json:"usage"`
	Error   json.RawMessage `json:"error"`
}

type streamChoice struct {
	Index        int64       `json:"index"`
	Delta        streamDelta `json:"delta"`
	FinishReason *string     `json:"finish_reason"`
}

type streamDelta struct {
	// Content is a string or null, or Mistral's array of chunks.
	Content   json.RawMessage  `json:"content"`
	Refusal   string           `json:"refusal"`
	ToolCalls []streamToolCall `json:"tool_calls"`
}

type streamToolCall struct {
	Index    int32  `json:"index"`
	ID       string `json:"id"`
	Function struct {
		Name      string          `json:"name"`
		Arguments json.RawMessage `json:"arguments"`
	} `json:"function"`
}
