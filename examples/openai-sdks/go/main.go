// Command go talks to Parley's OpenAI-compatible API with OpenAI's official Go SDK
// (github.com/openai/openai-go/v3), only its base URL changed: a chat completion, then a
// tool round trip (the model calls a tool, the application runs it and answers with the
// call's id). The model is a Parley component's name. It prints each answer and exits 1
// when an answer is not the one the echo component gives (../README.md shows them).
//
// The SDK reads OPENAI_BASE_URL (here default http://localhost:3500/v1, the router) and
// OPENAI_API_KEY (the router's DAPR_API_TOKEN when it wants one; any value otherwise).
package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

// model is the component the example talks to.
const model = "echo"

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "openai-go:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	client := openai.NewClient(
		option.WithBaseURL(cmp.Or(os.Getenv("OPENAI_BASE_URL"), "http://localhost:3500/v1")),
		option.WithAPIKey(cmp.Or(os.Getenv("OPENAI_API_KEY"), "parley")),
	)
	return errors.Join(chat(ctx, client), toolRoundTrip(ctx, client))
}

func chat(ctx context.Context, client openai.Client) error {
	res, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
		Model:    model,
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hello from openai-go")},
	})
	if err != nil {
		return fmt.Errorf("chat: %w", err)
	}
	if len(res.Choices) != 1 {
		return fmt.Errorf("chat: %d choices, want 1", len(res.Choices))
	}
	return check("chat", res.Choices[0].Message.Content+" ("+res.Choices[0].FinishReason+")", "hello from openai-go (stop)")
}

func toolRoundTrip(ctx context.Context, client openai.Client) error {
	params := openai.ChatCompletionNewParams{
		Model:    model,
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("What is the weather in Paris?")},
		Tools: []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(openai.FunctionDefinitionParam{
			Name:        "get_weather",
			Description: openai.String("Current weather at a place"),
			Parameters: openai.FunctionParameters{
				"type":       "object",
				"properties": map[string]any{"location": map[string]any{"type": "string"}},
				"required":   []string{"location"},
			},
		})},
	}
	res, err := client.Chat.Completions.New(ctx, params)
	if err != nil {
		return fmt.Errorf("tool call: %w", err)
	}
	if len(res.Choices) != 1 || len(res.Choices[0].Message.ToolCalls) != 1 {
		return fmt.Errorf("tool call: want one choice with one tool call, got %+v", res.Choices)
	}
	call := res.Choices[0].Message.ToolCalls[0]
	got := fmt.Sprintf("%s %s(%s)", res.Choices[0].FinishReason, call.Function.Name, call.Function.Arguments)
	if err := check("tool call", got, "tool_calls get_weather(location)"); err != nil {
		return err
	}

	// Run the tool; send the conversation back with its result under the call's id.
	params.Messages = append(params.Messages, res.Choices[0].Message.ToParam(), openai.ToolMessage("sunny, 21 degrees", call.ID))
	if res, err = client.Chat.Completions.New(ctx, params); err != nil {
		return fmt.Errorf("tool result: %w", err)
	}
	if len(res.Choices) != 1 {
		return fmt.Errorf("tool result: %d choices, want 1", len(res.Choices))
	}
	content := res.Choices[0].Message.Content
	last := content[strings.LastIndexByte(content, '\n')+1:]
	return check("tool result", last, "Tool Response for tool ID '"+call.ID+"' with name 'get_weather': sunny, 21 degrees")
}

// check prints got under label and fails when it is not want.
func check(label, got, want string) error {
	fmt.Printf("%-12s %s\n", label+":", got)
	if got != want {
		return fmt.Errorf("%s: got %q, want %q", label, got, want)
	}
	return nil
}
