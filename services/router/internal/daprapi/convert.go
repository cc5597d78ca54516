package daprapi

import (
	"slices"

	runtimev1 "github.com/parleyhq/parley/gen/pb/dapr/proto/runtime/v1"
	auditv1 "github.com/parleyhq/parley/gen/pb/parley/audit/v1"
	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/services/router/internal/conversation"
)

// Detail strings of ERR_CONVERSATION_INVALID_PARMS, as Dapr words them.
const (
	detailMessageNil     = "message type cannot be nil"
	detailToolTypesNil   = "tool types cannot be nil"
	detailToolChoice     = "tool choice must be 'auto', 'none', 'required', or a specific tool name matching the tools available to be used"
	detailToolChoiceMiss = "tool choice selected was not found. Must be 'auto', 'none', 'required', or a specific tool name matching the tools available to be used"
)

// alpha1Role maps an alpha1 role string as Dapr does; anything unknown is a user.
func alpha1Role(role string) providerv1.Role {
	switch role {
	case "system":
		return providerv1.Role_ROLE_SYSTEM
	case "assistant", "ai":
		return providerv1.Role_ROLE_ASSISTANT
	case "tool":
		return providerv1.Role_ROLE_TOOL
	case "function":
		return providerv1.Role_ROLE_FUNCTION
	case "generic":
		return providerv1.Role_ROLE_GENERIC
	default:
		return providerv1.Role_ROLE_USER
	}
}

func textPart(s string) *providerv1.Part {
	return &providerv1.Part{Kind: &providerv1.Part_Text{Text: s}}
}

// fromAlpha1 translates an alpha1 request: one message per input, the input's scrub flag
// on that message, top-level scrubPII on the outputs. Parameters and metadata do not
// reach the provider, as in Dapr.
func fromAlpha1(name string, req *runtimev1.ConversationRequest) (conversation.Request, *Error) {
	if len(req.GetInputs()) == 0 {
		return conversation.Request{}, errMissingInputs(name)
	}
	p := &providerv1.Request{Component: name, Temperature: req.GetTemperature()}
	scrub := make([]bool, len(req.GetInputs()))
	for i, in := range req.GetInputs() {
		p.Messages = append(p.Messages, &providerv1.Message{
			Role:  alpha1Role(in.GetRole()),
			Parts: []*providerv1.Part{textPart(in.GetContent())},
		})
		scrub[i] = in.GetScrubPII()
	}
	return conversation.Request{
		API:         auditv1.Api_API_ALPHA1,
		Provider:    p,
		ScrubInput:  scrub,
		ScrubOutput: req.GetScrubPII(),
		ContextID:   req.GetContextID(),
		BypassCache: bypassCache(req.GetMetadata()),
	}, nil
}

// toAlpha1 builds the alpha1 response: one result per choice holding its content, with
// the request's parameters echoed.
func toAlpha1(req *runtimev1.ConversationRequest, res *conversation.Result) *runtimev1.ConversationResponse {
	out := &runtimev1.ConversationResponse{}
	if id := req.GetContextID(); id != "" {
		out.ContextID = &id
	}
	for _, c := range res.Response.GetChoices() {
		out.Outputs = append(out.Outputs, &runtimev1.ConversationResult{Result: c.GetContent(), Parameters: req.GetParameters()})
	}
	return out
}

// fromAlpha2 translates an alpha2 request as Dapr's runtime does: every message of every
// input flattened in order, developer messages as user messages, tool calls and tool
// results as parts, tool_choice validated.
func fromAlpha2(name string, req *runtimev1.ConversationRequestAlpha2) (conversation.Request, *Error) {
	if len(req.GetInputs()) == 0 {
		return conversation.Request{}, errMissingInputs(name)
	}
	p := &providerv1.Request{
		Component:            name,
		Temperature:          req.GetTemperature(),
		Metadata:             req.GetMetadata(),
		ResponseFormat:       req.GetResponseFormat(),
		PromptCacheRetention: req.GetPromptCacheRetention(),
	}
	var scrub []bool
	for _, in := range req.GetInputs() {
		for _, m := range in.GetMessages() {
			msg, derr := alpha2Message(name, m)
			if derr != nil {
				return conversation.Request{}, derr
			}
			p.Messages = append(p.Messages, msg)
			scrub = append(scrub, in.GetScrubPii())
		}
	}

	tools := req.GetTools()
	choice := req.GetToolChoice()
	if choice == "" && len(tools) > 0 {
		choice = "auto"
	}
	switch choice {
	case "auto", "none", "":
	case "required":
		if len(tools) == 0 {
			return conversation.Request{}, errInvalidParams(name, detailToolChoice)
		}
	default:
		if tools != nil && !slices.ContainsFunc(tools, func(t *runtimev1.ConversationTools) bool {
			return t.GetFunction() != nil && t.GetFunction().GetName() == choice
		}) {
			return conversation.Request{}, errInvalidParams(name, detailToolChoiceMiss)
		}
	}
	p.ToolChoice = choice
	for _, t := range tools {
		if f := t.GetFunction(); f != nil {
			p.Tools = append(p.Tools, &providerv1.Tool{
				Type: "function", Name: f.GetName(), Description: f.GetDescription(), Parameters: f.GetParameters(),
			})
		}
	}
	return conversation.Request{
		API:         auditv1.Api_API_ALPHA2,
		Provider:    p,
		ScrubInput:  scrub,
		ScrubOutput: req.GetScrubPii(),
		// Beyond Dapr: tool-call arguments can carry PII too.
		ScrubToolArguments: req.GetScrubPii(),
		ContextID:          req.GetContextId(),
		BypassCache:        bypassCache(req.GetMetadata()),
	}, nil
}

func alpha2Message(name string, m *runtimev1.ConversationMessage) (*providerv1.Message, *Error) {
	texts := func(cs []*runtimev1.ConversationMessageContent) []*providerv1.Part {
		parts := make([]*providerv1.Part, 0, len(cs))
		for _, c := range cs {
			parts = append(parts, textPart(c.GetText()))
		}
		return parts
	}
	switch t := m.GetMessageTypes().(type) {
	case *runtimev1.ConversationMessage_OfDeveloper:
		return &providerv1.Message{Role: providerv1.Role_ROLE_USER, Parts: texts(t.OfDeveloper.GetContent())}, nil
	case *runtimev1.ConversationMessage_OfSystem:
		return &providerv1.Message{Role: providerv1.Role_ROLE_SYSTEM, Parts: texts(t.OfSystem.GetContent())}, nil
	case *runtimev1.ConversationMessage_OfUser:
		return &providerv1.Message{Role: providerv1.Role_ROLE_USER, Parts: texts(t.OfUser.GetContent())}, nil
	case *runtimev1.ConversationMessage_OfAssistant:
		msg := &providerv1.Message{Role: providerv1.Role_ROLE_ASSISTANT, Parts: texts(t.OfAssistant.GetContent())}
		for _, tc := range t.OfAssistant.GetToolCalls() {
			f := tc.GetFunction()
			if f == nil {
				return nil, errInvalidParams(name, detailToolTypesNil)
			}
			msg.Parts = append(msg.Parts, &providerv1.Part{Kind: &providerv1.Part_ToolCall{ToolCall: &providerv1.ToolCall{
				Id: tc.GetId(), Type: "function", Name: f.GetName(), Arguments: f.GetArguments(),
			}}})
		}
		return msg, nil
	case *runtimev1.ConversationMessage_OfTool:
		msg := &providerv1.Message{Role: providerv1.Role_ROLE_TOOL}
		for _, c := range t.OfTool.GetContent() {
			msg.Parts = append(msg.Parts, &providerv1.Part{Kind: &providerv1.Part_ToolResult{ToolResult: &providerv1.ToolResult{
				ToolCallId: t.OfTool.GetToolId(), Name: t.OfTool.GetName(), Content: c.GetText(),
			}}})
		}
		return msg, nil
	default:
		return nil, errInvalidParams(name, detailMessageNil)
	}
}

// toAlpha2 builds the alpha2 response: one output per choice, each with the model and
// usage of the whole response, as Dapr's runtime copies them.
func toAlpha2(req *runtimev1.ConversationRequestAlpha2, res *conversation.Result) *runtimev1.ConversationResponseAlpha2 {
	out := &runtimev1.ConversationResponseAlpha2{}
	if id := req.GetContextId(); id != "" {
		out.ContextId = &id
	}
	resp := res.Response
	var model *string
	if m := resp.GetModel(); m != "" {
		model = &m
	}
	usage := alpha2Usage(resp.GetUsage())
	for _, c := range resp.GetChoices() {
		reason := c.GetFinishReason()
		if reason == "" {
			reason = "unknown"
		}
		msg := &runtimev1.ConversationResultMessage{Content: c.GetContent()}
		for _, tc := range c.GetToolCalls() {
			call := &runtimev1.ConversationToolCalls{ToolTypes: &runtimev1.ConversationToolCalls_Function{
				Function: &runtimev1.ConversationToolCallsOfFunction{Name: tc.GetName(), Arguments: tc.GetArguments()},
			}}
			if id := tc.GetId(); id != "" {
				call.Id = &id
			}
			msg.ToolCalls = append(msg.ToolCalls, call)
		}
		out.Outputs = append(out.Outputs, &runtimev1.ConversationResultAlpha2{
			Choices: []*runtimev1.ConversationResultChoices{{FinishReason: reason, Index: c.GetIndex(), Message: msg}},
			Model:   model,
			Usage:   usage,
		})
	}
	return out
}

// alpha2Usage omits usage when all totals are zero and each details object when all its
// counters are zero, as Dapr does.
func alpha2Usage(u *providerv1.Usage) *runtimev1.ConversationResultAlpha2CompletionUsage {
	if u.GetPromptTokens() == 0 && u.GetCompletionTokens() == 0 && u.GetTotalTokens() == 0 {
		return nil
	}
	out := &runtimev1.ConversationResultAlpha2CompletionUsage{
		CompletionTokens: u.GetCompletionTokens(), PromptTokens: u.GetPromptTokens(), TotalTokens: u.GetTotalTokens(),
	}
	if u.GetCompletionAcceptedPredictionTokens()+u.GetCompletionAudioTokens()+u.GetCompletionReasoningTokens()+u.GetCompletionRejectedPredictionTokens() > 0 {
		out.CompletionTokensDetails = &runtimev1.ConversationResultAlpha2CompletionUsageCompletionTokensDetails{
			AcceptedPredictionTokens: u.GetCompletionAcceptedPredictionTokens(), AudioTokens: u.GetCompletionAudioTokens(),
			ReasoningTokens: u.GetCompletionReasoningTokens(), RejectedPredictionTokens: u.GetCompletionRejectedPredictionTokens(),
		}
	}
	if u.GetPromptAudioTokens()+u.GetPromptCachedTokens() > 0 {
		out.PromptTokensDetails = &runtimev1.ConversationResultAlpha2CompletionUsagePromptTokensDetails{
			AudioTokens: u.GetPromptAudioTokens(), CachedTokens: u.GetPromptCachedTokens(),
		}
	}
	return out
}

// CacheMetadataKey in a Dapr request's metadata set to "false" (or "off", "bypass")
// skips the response cache for that request. Dapr has no such switch; its body has no
// other place for it.
const CacheMetadataKey = "parley.cache"

func bypassCache(md map[string]string) bool {
	switch md[CacheMetadataKey] {
	case "false", "off", "bypass":
		return true
	}
	return false
}
