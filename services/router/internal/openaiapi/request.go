package openaiapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"

	auditv1 "github.com/parleyhq/parley/gen/pb/parley/audit/v1"
	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/services/router/internal/conversation"
)

// chatRequest is the body of POST /v1/chat/completions. The fields Parley honours are
// typed; the ones it accepts and ignores, and the ones it refuses unless left at their
// default, are kept raw. Any other field is refused, as OpenAI refuses it.
type chatRequest struct {
	Model               string            `json:"model"`
	Messages            []chatMessage     `json:"messages"`
	Tools               []chatTool        `json:"tools"`
	ToolChoice          json.RawMessage   `json:"tool_choice"`
	ResponseFormat      *responseFormat   `json:"response_format"`
	Temperature         *float64          `json:"temperature"`
	MaxTokens           *int64            `json:"max_tokens"`
	MaxCompletionTokens *int64            `json:"max_completion_tokens"`
	Stop                json.RawMessage   `json:"stop"`
	N                   *int64            `json:"n"`
	User                *string           `json:"user"`
	Metadata            map[string]string `json:"metadata"`
	Stream              *bool             `json:"stream"`
	StreamOptions       json.RawMessage   `json:"stream_options"`

	// Accepted and not forwarded (docs/openai.md lists them).
	ParallelToolCalls    json.RawMessage `json:"parallel_tool_calls"`
	Store                json.RawMessage `json:"store"`
	Seed                 json.RawMessage `json:"seed"`
	TopP                 json.RawMessage `json:"top_p"`
	FrequencyPenalty     json.RawMessage `json:"frequency_penalty"`
	PresencePenalty      json.RawMessage `json:"presence_penalty"`
	LogitBias            json.RawMessage `json:"logit_bias"`
	ServiceTier          json.RawMessage `json:"service_tier"`
	ReasoningEffort      json.RawMessage `json:"reasoning_effort"`
	PromptCacheKey       json.RawMessage `json:"prompt_cache_key"`
	PromptCacheRetention json.RawMessage `json:"prompt_cache_retention"`
	SafetyIdentifier     json.RawMessage `json:"safety_identifier"`
	Verbosity            json.RawMessage `json:"verbosity"`

	// Refused unless absent, null or their default.
	Logprobs         json.RawMessage `json:"logprobs"`
	TopLogprobs      json.RawMessage `json:"top_logprobs"`
	Modalities       json.RawMessage `json:"modalities"`
	Audio            json.RawMessage `json:"audio"`
	Prediction       json.RawMessage `json:"prediction"`
	WebSearchOptions json.RawMessage `json:"web_search_options"`
	Functions        json.RawMessage `json:"functions"`
	FunctionCall     json.RawMessage `json:"function_call"`
}

type chatMessage struct {
	Role         string          `json:"role"`
	Content      json.RawMessage `json:"content"`
	Name         *string         `json:"name"`
	ToolCalls    []toolCall      `json:"tool_calls"`
	ToolCallID   *string         `json:"tool_call_id"`
	Refusal      *string         `json:"refusal"`
	Audio        json.RawMessage `json:"audio"`
	FunctionCall json.RawMessage `json:"function_call"`
	// Annotations come back when a client sends an answer's message as it got it (as
	// OpenAI's guides do); they are ignored.
	Annotations json.RawMessage `json:"annotations"`
}

type toolCall struct {
	ID       string       `json:"id"`
	Type     string       `json:"type"`
	Function functionCall `json:"function"`
}

type functionCall struct {
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
}

type contentPart struct {
	Type       string          `json:"type"`
	Text       *string         `json:"text"`
	Refusal    *string         `json:"refusal"`
	ImageURL   json.RawMessage `json:"image_url"`
	InputAudio json.RawMessage `json:"input_audio"`
	File       json.RawMessage `json:"file"`
}

type chatTool struct {
	Type     string          `json:"type"`
	Function *functionDef    `json:"function"`
	Custom   json.RawMessage `json:"custom"`
}

type functionDef struct {
	Name        string          `json:"name"`
	Description string          `json:"description"`
	Parameters  json.RawMessage `json:"parameters"`
	Strict      *bool           `json:"strict"`
}

type responseFormat struct {
	Type       string            `json:"type"`
	JSONSchema *jsonSchemaFormat `json:"json_schema"`
}

type jsonSchemaFormat struct {
	Name        string          `json:"name"`
	Description *string         `json:"description"`
	Schema      json.RawMessage `json:"schema"`
	Strict      *bool           `json:"strict"`
}

// namedToolChoice is tool_choice as an object.
type namedToolChoice struct {
	Type     string `json:"type"`
	Function struct {
		Name string `json:"name"`
	} `json:"function"`
}

// OpenAI's limits, kept so that a request OpenAI refuses is refused here too.
const (
	maxStop          = 4
	maxTools         = 128
	maxMetadataPairs = 16
	maxMetadataKey   = 64
	maxMetadataValue = 512
)

// functionName is OpenAI's rule for function and schema names.
var functionName = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)

// decodeStrict decodes one JSON value into v, refusing unknown fields and trailing data.
func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("unexpected data after the JSON value")
	}
	return nil
}

// decodeRequest reads a request body; its errors are OpenAI's 400s.
func decodeRequest(body []byte) (*chatRequest, *Error) {
	var req chatRequest
	if err := decodeStrict(body, &req); err != nil {
		return nil, decodeError("", err)
	}
	return &req, nil
}

// decodeError words a decoding failure as OpenAI does; at names the value being decoded
// when it is not the whole body.
func decodeError(at string, err error) *Error {
	var typeErr *json.UnmarshalTypeError
	switch {
	case strings.HasPrefix(err.Error(), `json: unknown field "`):
		name := strings.TrimSuffix(strings.TrimPrefix(err.Error(), `json: unknown field "`), `"`)
		if at != "" {
			name = at + "." + name
		}
		return invalidParam("", "Unrecognized request argument supplied: %s", echo(name))
	case errors.As(err, &typeErr):
		field := typeErr.Field
		if at != "" {
			field = strings.TrimSuffix(at+"."+field, ".")
		}
		return invalidParam(field, "Invalid type for '%s': expected %s, but got %s.", field, jsonType(typeErr.Type.Kind().String()), typeErr.Value)
	default:
		if at != "" {
			return invalidParam(at, "Invalid value for '%s': %v.", at, err)
		}
		return invalidParam("", "We could not parse the JSON body of your request: %v. The body must be one JSON object.", err)
	}
}

// maxEcho bounds a caller's value quoted in an error message.
const maxEcho = 64

// echo is a caller's value as an error message quotes it: at most maxEcho bytes.
func echo(s string) string {
	if len(s) <= maxEcho {
		return s
	}
	return strings.ToValidUTF8(s[:maxEcho], "") + "…"
}

// jsonType names a Go kind as a JSON type.
func jsonType(kind string) string {
	switch kind {
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "slice", "array":
		return "an array"
	case "struct", "map", "ptr":
		return "an object"
	default:
		return "a number"
	}
}

// set reports whether a raw field is present and not null.
func set(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) > 0 && !bytes.Equal(raw, []byte("null"))
}

// checkRefused refuses the fields Parley cannot honour when they ask for more than the
// default.
func (req *chatRequest) checkRefused() *Error {
	if set(req.Logprobs) && !bytes.Equal(bytes.TrimSpace(req.Logprobs), []byte("false")) {
		return invalidParam("logprobs", "'logprobs' is not supported by Parley; leave it false or unset.")
	}
	if set(req.Modalities) {
		var m []string
		if err := json.Unmarshal(req.Modalities, &m); err != nil || !slices.Equal(m, []string{"text"}) {
			return invalidParam("modalities", `'modalities' must be ["text"] or unset: Parley answers with text only.`)
		}
	}
	for _, f := range []struct {
		name string
		raw  json.RawMessage
	}{
		{"top_logprobs", req.TopLogprobs}, {"audio", req.Audio}, {"prediction", req.Prediction},
		{"web_search_options", req.WebSearchOptions}, {"functions", req.Functions}, {"function_call", req.FunctionCall},
	} {
		if set(f.raw) {
			return invalidParam(f.name, "'%s' is not supported by Parley.", f.name)
		}
	}
	if set(req.StreamOptions) && (req.Stream == nil || !*req.Stream) {
		return invalidParam("stream_options", "The 'stream_options' parameter is only allowed when 'stream' is enabled.")
	}
	if req.N != nil && *req.N != 1 {
		return invalidParam("n", "'n' must be 1: Parley returns one choice per request.")
	}
	return nil
}

// translate turns a decoded request for component comp into a conversation request; the
// Parley headers of hdr (and the parley.* metadata keys) set scrubbing and the cache.
func translate(req *chatRequest, hdr http.Header) (conversation.Request, *Error) {
	if e := req.checkRefused(); e != nil {
		return conversation.Request{}, e
	}
	p := &providerv1.Request{Component: req.Model}
	if t := req.Temperature; t != nil {
		if *t < 0 || *t > 2 {
			return conversation.Request{}, invalidParam("temperature", "Invalid 'temperature': expected a value between 0 and 2, but got %g instead.", *t)
		}
		p.Temperature = *t
	}
	maxTokens, param := req.MaxCompletionTokens, "max_completion_tokens"
	if maxTokens == nil {
		maxTokens, param = req.MaxTokens, "max_tokens"
	}
	if maxTokens != nil {
		if *maxTokens < 1 {
			return conversation.Request{}, invalidParam(param, "Invalid '%s': expected a value >= 1, but got %d instead.", param, *maxTokens)
		}
		v := *maxTokens
		p.MaxTokens = &v
	}
	stop, e := stopSequences(req.Stop)
	if e != nil {
		return conversation.Request{}, e
	}
	p.Stop = stop
	if e := checkMetadata(req.Metadata); e != nil {
		return conversation.Request{}, e
	}
	opts, e := parleyOptions(hdr, req.Metadata)
	if e != nil {
		return conversation.Request{}, e
	}
	p.Metadata = forwardedMetadata(req.Metadata)

	if len(req.Tools) > maxTools {
		return conversation.Request{}, invalidParam("tools", "Invalid 'tools': array too long. Expected an array with maximum length %d, but got an array with length %d instead.", maxTools, len(req.Tools))
	}
	for i, t := range req.Tools {
		tool, e := fromTool(i, t)
		if e != nil {
			return conversation.Request{}, e
		}
		p.Tools = append(p.Tools, tool)
	}
	choice, e := toolChoice(req.ToolChoice, p.Tools)
	if e != nil {
		return conversation.Request{}, e
	}
	p.ToolChoice = choice
	rf, e := fromResponseFormat(req.ResponseFormat)
	if e != nil {
		return conversation.Request{}, e
	}
	p.ResponseFormat = rf

	if len(req.Messages) == 0 {
		return conversation.Request{}, invalidParam("messages", "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.")
	}
	names := map[string]string{} // tool call id → function name, for tool results
	for i, m := range req.Messages {
		msg, e := fromMessage(i, m, names)
		if e != nil {
			return conversation.Request{}, e
		}
		p.Messages = append(p.Messages, msg)
	}
	scrub := make([]bool, len(p.Messages))
	if opts.inputs {
		for i := range scrub {
			scrub[i] = true
		}
	}
	return conversation.Request{
		API:                auditv1.Api_API_OPENAI,
		Provider:           p,
		ScrubInput:         scrub,
		ScrubOutput:        opts.outputs,
		ScrubToolArguments: opts.outputs,
		Tokenize:           opts.tokenize,
		BypassCache:        opts.bypassCache,
		ErrorCode:          auditCode,
	}, nil
}

func stopSequences(raw json.RawMessage) ([]string, *Error) {
	if !set(raw) {
		return nil, nil
	}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return []string{one}, nil
	}
	var many []string
	if err := json.Unmarshal(raw, &many); err != nil {
		return nil, invalidParam("stop", "Invalid type for 'stop': expected a string or an array of strings.")
	}
	if len(many) > maxStop {
		return nil, invalidParam("stop", "Invalid 'stop': array too long. Expected an array with maximum length %d, but got an array with length %d instead.", maxStop, len(many))
	}
	return many, nil
}

func checkMetadata(md map[string]string) *Error {
	if len(md) > maxMetadataPairs {
		return invalidParam("metadata", "Invalid 'metadata': too many properties. Expected an object with at most %d properties, but got %d instead.", maxMetadataPairs, len(md))
	}
	for k, v := range md {
		if len(k) > maxMetadataKey {
			return invalidParam("metadata", "Invalid 'metadata': keys must be at most %d characters long.", maxMetadataKey)
		}
		if len(v) > maxMetadataValue {
			return invalidParam("metadata", "Invalid 'metadata': values must be at most %d characters long.", maxMetadataValue)
		}
	}
	return nil
}

// forwardedMetadata is the request's metadata without Parley's own keys, which steer the
// gateway and are not the provider's business (nor the cache key's).
func forwardedMetadata(md map[string]string) map[string]string {
	var out map[string]string
	for k, v := range md {
		if strings.HasPrefix(k, metadataPrefix) {
			continue
		}
		if out == nil {
			out = make(map[string]string, len(md))
		}
		out[k] = v
	}
	return out
}

func fromTool(i int, t chatTool) (*providerv1.Tool, *Error) {
	param := fmt.Sprintf("tools[%d]", i)
	if t.Type != "function" {
		return nil, invalidParam(param+".type", "Invalid value for '%s.type': Parley supports tools of type 'function' only.", param)
	}
	if t.Function == nil {
		return nil, invalidParam(param+".function", "Missing required parameter: '%s.function'.", param)
	}
	if !functionName.MatchString(t.Function.Name) {
		return nil, invalidParam(param+".function.name", "Invalid '%s.function.name': string does not match pattern. Expected a string that matches the pattern '^[a-zA-Z0-9_-]+$' of at most 64 characters.", param)
	}
	tool := &providerv1.Tool{Type: "function", Name: t.Function.Name, Description: t.Function.Description}
	if set(t.Function.Parameters) {
		s, e := jsonObject(param+".function.parameters", t.Function.Parameters)
		if e != nil {
			return nil, e
		}
		tool.Parameters = s
	}
	return tool, nil
}

// jsonObject decodes raw, which must be a JSON object, into a Struct.
func jsonObject(param string, raw json.RawMessage) (*structpb.Struct, *Error) {
	if b := bytes.TrimSpace(raw); len(b) == 0 || b[0] != '{' {
		return nil, invalidParam(param, "Invalid type for '%s': expected an object.", param)
	}
	s := &structpb.Struct{}
	if err := protojson.Unmarshal(raw, s); err != nil {
		return nil, invalidParam(param, "Invalid value for '%s': not a JSON object Parley can read.", param)
	}
	return s, nil
}

func toolChoice(raw json.RawMessage, tools []*providerv1.Tool) (string, *Error) {
	choice := ""
	if set(raw) {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			if s != "none" && s != "auto" && s != "required" {
				return "", invalidParam("tool_choice", "Invalid value for 'tool_choice': '%s'. Supported values are: 'none', 'auto' and 'required', or an object naming a function.", echo(s))
			}
			choice = s
		} else {
			var named namedToolChoice
			if err := decodeStrict(raw, &named); err != nil {
				return "", decodeError("tool_choice", err)
			}
			if named.Type != "function" || named.Function.Name == "" {
				return "", invalidParam("tool_choice", "Invalid value for 'tool_choice': Parley supports {\"type\": \"function\", \"function\": {\"name\": ...}} objects only.")
			}
			choice = named.Function.Name
			if !slices.ContainsFunc(tools, func(t *providerv1.Tool) bool { return t.GetName() == choice }) {
				return "", invalidParam("tool_choice", "Invalid value for 'tool_choice': the function '%s' is not among the request's tools.", echo(choice))
			}
		}
	}
	switch {
	case choice == "" && len(tools) > 0:
		choice = "auto"
	case choice == "required" && len(tools) == 0:
		return "", invalidParam("tool_choice", "Invalid value for 'tool_choice': 'required' needs at least one tool in 'tools'.")
	}
	return choice, nil
}

// fromResponseFormat translates response_format to the provider request's JSON Schema
// (Dapr's form: the schema itself, with name, description and strict at its root). A
// json_object format is an open object schema; text is no format.
func fromResponseFormat(rf *responseFormat) (*structpb.Struct, *Error) {
	if rf == nil {
		return nil, nil
	}
	switch rf.Type {
	case "text":
		return nil, nil
	case "json_object":
		return openObject("json_object"), nil
	case "json_schema":
	default:
		return nil, invalidParam("response_format.type", "Invalid value for 'response_format.type': '%s'. Supported values are: 'text', 'json_object' and 'json_schema'.", echo(rf.Type))
	}
	js := rf.JSONSchema
	if js == nil {
		return nil, invalidParam("response_format.json_schema", "Missing required parameter: 'response_format.json_schema'.")
	}
	if !functionName.MatchString(js.Name) {
		return nil, invalidParam("response_format.json_schema.name", "Invalid 'response_format.json_schema.name': expected a string that matches the pattern '^[a-zA-Z0-9_-]+$' of at most 64 characters.")
	}
	s := openObject(js.Name)
	if set(js.Schema) {
		var e *Error
		if s, e = jsonObject("response_format.json_schema.schema", js.Schema); e != nil {
			return nil, e
		}
		s.Fields["name"] = structpb.NewStringValue(js.Name)
	}
	if js.Description != nil {
		s.Fields["description"] = structpb.NewStringValue(*js.Description)
	}
	if js.Strict != nil {
		s.Fields["strict"] = structpb.NewBoolValue(*js.Strict)
	}
	return s, nil
}

// openObject is a schema any JSON object meets.
func openObject(name string) *structpb.Struct {
	return &structpb.Struct{Fields: map[string]*structpb.Value{
		"type":                 structpb.NewStringValue("object"),
		"additionalProperties": structpb.NewBoolValue(true),
		"name":                 structpb.NewStringValue(name),
	}}
}

func textPart(s string) *providerv1.Part {
	return &providerv1.Part{Kind: &providerv1.Part_Text{Text: s}}
}

// fromMessage translates messages[i]. names maps the tool call ids of earlier assistant
// messages to their function names, which tool results carry to the provider (some
// providers need the name of the function that answered).
func fromMessage(i int, m chatMessage, names map[string]string) (*providerv1.Message, *Error) {
	param := fmt.Sprintf("messages[%d]", i)
	if set(m.FunctionCall) || set(m.Audio) {
		return nil, invalidParam(param, "Invalid '%s': 'function_call' and 'audio' are not supported by Parley; use 'tool_calls'.", param)
	}
	if len(m.ToolCalls) > 0 && m.Role != "assistant" {
		return nil, invalidParam(param+".tool_calls", "Invalid '%s': only assistant messages carry 'tool_calls'.", param)
	}
	if m.ToolCallID != nil && m.Role != "tool" {
		return nil, invalidParam(param+".tool_call_id", "Invalid '%s': only tool messages carry 'tool_call_id'.", param)
	}
	var role providerv1.Role
	switch m.Role {
	case "system":
		role = providerv1.Role_ROLE_SYSTEM
	case "developer":
		role = providerv1.Role_ROLE_DEVELOPER
	case "user":
		role = providerv1.Role_ROLE_USER
	case "function":
		role = providerv1.Role_ROLE_FUNCTION
	case "assistant":
		return fromAssistant(param, m, names)
	case "tool":
		return fromToolMessage(param, m, names)
	case "":
		return nil, invalidParam(param+".role", "Missing required parameter: '%s.role'.", param)
	default:
		return nil, invalidParam(param+".role", "Invalid value: '%s'. Supported values are: 'system', 'assistant', 'user', 'function', 'tool', and 'developer'.", echo(m.Role))
	}
	texts, e := contentTexts(param+".content", m.Content, false)
	if e != nil {
		return nil, e
	}
	if texts == nil {
		return nil, invalidParam(param+".content", "Missing required parameter: '%s.content'.", param)
	}
	msg := &providerv1.Message{Role: role}
	for _, t := range texts {
		msg.Parts = append(msg.Parts, textPart(t))
	}
	return msg, nil
}

func fromAssistant(param string, m chatMessage, names map[string]string) (*providerv1.Message, *Error) {
	texts, e := contentTexts(param+".content", m.Content, true)
	if e != nil {
		return nil, e
	}
	msg := &providerv1.Message{Role: providerv1.Role_ROLE_ASSISTANT}
	for _, t := range texts {
		msg.Parts = append(msg.Parts, textPart(t))
	}
	if len(msg.Parts) == 0 && len(m.ToolCalls) == 0 {
		if m.Refusal == nil {
			return nil, invalidParam(param+".content", "Invalid '%s': an assistant message needs 'content' or 'tool_calls'.", param)
		}
		msg.Parts = append(msg.Parts, textPart(*m.Refusal))
	}
	for j, tc := range m.ToolCalls {
		tp := fmt.Sprintf("%s.tool_calls[%d]", param, j)
		if tc.Type != "function" {
			return nil, invalidParam(tp+".type", "Invalid value for '%s.type': Parley supports tool calls of type 'function' only.", tp)
		}
		if tc.ID == "" {
			return nil, invalidParam(tp+".id", "Missing required parameter: '%s.id'.", tp)
		}
		if tc.Function.Name == "" {
			return nil, invalidParam(tp+".function.name", "Missing required parameter: '%s.function.name'.", tp)
		}
		names[tc.ID] = tc.Function.Name
		msg.Parts = append(msg.Parts, &providerv1.Part{Kind: &providerv1.Part_ToolCall{ToolCall: &providerv1.ToolCall{
			Id: tc.ID, Type: "function", Name: tc.Function.Name, Arguments: tc.Function.Arguments,
		}}})
	}
	return msg, nil
}

// fromToolMessage translates a tool message: its text parts, joined, are the result of the call
// it names.
func fromToolMessage(param string, m chatMessage, names map[string]string) (*providerv1.Message, *Error) {
	if m.ToolCallID == nil || *m.ToolCallID == "" {
		return nil, invalidParam(param+".tool_call_id", "Missing required parameter: '%s.tool_call_id'.", param)
	}
	texts, e := contentTexts(param+".content", m.Content, false)
	if e != nil {
		return nil, e
	}
	if texts == nil {
		return nil, invalidParam(param+".content", "Missing required parameter: '%s.content'.", param)
	}
	name := names[*m.ToolCallID]
	if name == "" && m.Name != nil {
		name = *m.Name // some clients name the function on its result themselves
	}
	return &providerv1.Message{Role: providerv1.Role_ROLE_TOOL, Parts: []*providerv1.Part{{Kind: &providerv1.Part_ToolResult{
		ToolResult: &providerv1.ToolResult{ToolCallId: *m.ToolCallID, Name: name, Content: strings.Join(texts, "")},
	}}}}, nil
}

// contentTexts reads a message's content: a string, or an array of text parts (and, for
// assistant messages, refusal parts). Absent or null content is nil. Parts of other types
// (images, audio, files) are refused: Parley passes text.
func contentTexts(param string, raw json.RawMessage, assistant bool) ([]string, *Error) {
	if !set(raw) {
		return nil, nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return []string{s}, nil
	}
	var parts []json.RawMessage
	if err := json.Unmarshal(raw, &parts); err != nil {
		return nil, invalidParam(param, "Invalid type for '%s': expected a string or an array of content parts.", param)
	}
	texts := make([]string, 0, len(parts))
	for j, rawPart := range parts {
		pp := fmt.Sprintf("%s[%d]", param, j)
		var part contentPart
		if err := decodeStrict(rawPart, &part); err != nil {
			return nil, decodeError(pp, err)
		}
		switch {
		case part.Type == "text" && part.Text != nil:
			texts = append(texts, *part.Text)
		case part.Type == "text":
			return nil, invalidParam(pp+".text", "Missing required parameter: '%s.text'.", pp)
		case part.Type == "refusal" && assistant && part.Refusal != nil:
			texts = append(texts, *part.Refusal)
		default:
			return nil, invalidParam(pp+".type", "Invalid value for '%s.type': '%s'. Parley passes text content parts only.", pp, echo(part.Type))
		}
	}
	return texts, nil
}
