// Command go-dapr-sdk talks to Parley with the official Dapr Go SDK, as an application
// talks to a Dapr sidecar: alpha1 with input scrubbing, alpha2 with input and output
// scrubbing, and an alpha2 tool round trip (the model asks for a tool, the application
// runs it and sends the result back). It prints each answer and exits 1 when an answer is
// not the one the echo component gives (README.md shows them).
//
// The SDK finds the router as it finds daprd: DAPR_GRPC_ENDPOINT (default
// localhost:50001) and DAPR_API_TOKEN when the router wants a token.
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"strings"
	"time"

	dapr "github.com/dapr/go-sdk/client"
	"google.golang.org/protobuf/types/known/structpb"
)

// component is the conversation component the example talks to.
const component = "echo"

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "go-dapr-sdk:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	dapr.SetLogger(log.New(os.Stderr, "", 0)) // the SDK's own lines, off stdout
	client, err := dapr.NewClient()           // DAPR_GRPC_ENDPOINT, DAPR_API_TOKEN
	if err != nil {
		return err
	}
	defer client.Close()
	return errors.Join(alpha1(ctx, client), alpha2(ctx, client), toolRoundTrip(ctx, client))
}

// alpha1 sends one input to scrub: the provider sees the placeholder, never the number.
func alpha1(ctx context.Context, client dapr.Client) error {
	//nolint:staticcheck // alpha1 is deprecated in Dapr, and still served
	req := dapr.NewConversationRequest(component, []dapr.ConversationInput{
		{Content: "well hello there, my phone number is +2222222222", ScrubPII: ptr(true)},
	})
	res, err := client.ConverseAlpha1(ctx, req)
	if err != nil {
		return fmt.Errorf("alpha1: %w", err)
	}
	if len(res.Outputs) != 1 {
		return fmt.Errorf("alpha1: %d outputs, want 1", len(res.Outputs))
	}
	return check("alpha1", res.Outputs[0].Result, "well hello there, my phone number is <PHONE_NUMBER>")
}

// alpha2 scrubs the input (ScrubPII on the input) and the answer (ScrubPII on the request).
func alpha2(ctx context.Context, client dapr.Client) error {
	res, err := client.ConverseAlpha2(ctx, dapr.ConversationRequestAlpha2{
		Name: component,
		Inputs: []*dapr.ConversationInputAlpha2{{
			Messages: []*dapr.ConversationMessageAlpha2{user("my email is test@test.com")},
			ScrubPII: ptr(true),
		}},
		ScrubPII: ptr(true),
	})
	if err != nil {
		return fmt.Errorf("alpha2: %w", err)
	}
	choice, err := only(res)
	if err != nil {
		return fmt.Errorf("alpha2: %w", err)
	}
	return check("alpha2", choice.Message.Content, "my email is <EMAIL_ADDRESS>")
}

// toolRoundTrip offers a tool; the model calls it; the application runs it and sends the
// whole conversation back with the tool's result.
func toolRoundTrip(ctx context.Context, client dapr.Client) error {
	params, err := structpb.NewStruct(map[string]any{
		"type":       "object",
		"properties": map[string]any{"location": map[string]any{"type": "string"}},
		"required":   []any{"location"},
	})
	if err != nil {
		return err
	}
	weather := &dapr.ConversationToolsAlpha2{Name: "get_weather", Description: ptr("Current weather at a place"), Parameters: params}
	question := user("What is the weather in Paris?")

	res, err := client.ConverseAlpha2(ctx, dapr.ConversationRequestAlpha2{
		Name:   component,
		Inputs: []*dapr.ConversationInputAlpha2{{Messages: []*dapr.ConversationMessageAlpha2{question}}},
		Tools:  []*dapr.ConversationToolsAlpha2{weather},
	})
	if err != nil {
		return fmt.Errorf("tool call: %w", err)
	}
	choice, err := only(res)
	if err != nil {
		return fmt.Errorf("tool call: %w", err)
	}
	if len(choice.Message.ToolCalls) != 1 {
		return fmt.Errorf("tool call: %d tool calls, want 1 (finish reason %q)", len(choice.Message.ToolCalls), choice.FinishReason)
	}
	call := choice.Message.ToolCalls[0]
	got := fmt.Sprintf("%s %s(%s) id=%q", choice.FinishReason, call.ToolTypes.Name, call.ToolTypes.Arguments, call.ID)
	// Echo calls every tool offered, its arguments the names of the tool's parameters.
	if err := check("tool call", got, `tool_calls get_weather(location) id="0"`); err != nil {
		return err
	}

	// The application runs the tool and answers with the call's id.
	result := "sunny, 21 degrees"
	res, err = client.ConverseAlpha2(ctx, dapr.ConversationRequestAlpha2{
		Name: component,
		Inputs: []*dapr.ConversationInputAlpha2{{Messages: []*dapr.ConversationMessageAlpha2{
			question,
			{ConversationMessageOfAssistant: &dapr.ConversationMessageOfAssistantAlpha2{ToolCalls: []*dapr.ConversationToolCallsAlpha2{call}}},
			{ConversationMessageOfTool: &dapr.ConversationMessageOfToolAlpha2{
				ToolID: ptr(call.ID), Name: ptr(call.ToolTypes.Name), Content: text(result),
			}},
		}}},
		Tools: []*dapr.ConversationToolsAlpha2{weather},
	})
	if err != nil {
		return fmt.Errorf("tool result: %w", err)
	}
	if choice, err = only(res); err != nil {
		return fmt.Errorf("tool result: %w", err)
	}
	// Echo answers with the conversation it was sent, the tool's result last.
	last := choice.Message.Content[strings.LastIndexByte(choice.Message.Content, '\n')+1:]
	return check("tool result", last, "Tool Response for tool ID '0' with name 'get_weather': sunny, 21 degrees")
}

// only is the one choice of the one output of res.
func only(res *dapr.ConversationResponseAlpha2) (*dapr.ConversationResultChoicesAlpha2, error) {
	if len(res.Outputs) != 1 || len(res.Outputs[0].Choices) != 1 || res.Outputs[0].Choices[0].Message == nil {
		return nil, fmt.Errorf("want one output with one choice, got %d outputs", len(res.Outputs))
	}
	return res.Outputs[0].Choices[0], nil
}

// check prints got under label and fails when it is not want.
func check(label, got, want string) error {
	fmt.Printf("%-12s %s\n", label+":", got)
	if got != want {
		return fmt.Errorf("%s: got %q, want %q", label, got, want)
	}
	return nil
}

func user(s string) *dapr.ConversationMessageAlpha2 {
	return &dapr.ConversationMessageAlpha2{ConversationMessageOfUser: &dapr.ConversationMessageOfUserAlpha2{Content: text(s)}}
}

func text(s string) []*dapr.ConversationMessageContentAlpha2 {
	return []*dapr.ConversationMessageContentAlpha2{{Text: ptr(s)}}
}

func ptr[T any](v T) *T { return &v }
