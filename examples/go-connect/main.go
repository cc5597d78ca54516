// Command go-connect talks to Parley's native API, parley.conversation.v1, with the Connect
// client generated from proto/ (github.com/parleyhq/parley/gen): one unary Converse call
// with input scrubbing, then one ConverseStream call read to its end. It prints each answer
// and exits 1 when an answer is not the one the echo component gives (README.md shows them).
//
// PARLEY_ROUTER_URL is the router's base URL (default http://localhost:3500);
// DAPR_API_TOKEN, when set, is sent as the dapr-api-token header.
package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"connectrpc.com/connect"

	conversationv1 "github.com/parleyhq/parley/gen/pb/parley/conversation/v1"
	"github.com/parleyhq/parley/gen/pb/parley/conversation/v1/conversationv1connect"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "go-connect:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	router := cmp.Or(os.Getenv("PARLEY_ROUTER_URL"), "http://localhost:3500")
	// The Connect protocol runs over HTTP/1.1 or HTTP/2; connect.WithGRPC() would speak
	// gRPC instead (HTTP/2 only).
	client := conversationv1connect.NewConversationServiceClient(http.DefaultClient, router,
		connect.WithInterceptors(tokenInterceptor(os.Getenv("DAPR_API_TOKEN"))))
	return errors.Join(converse(ctx, client), stream(ctx, client))
}

// converse scrubs the input: the provider sees the placeholder, never the address.
func converse(ctx context.Context, client conversationv1connect.ConversationServiceClient) error {
	res, err := client.Converse(ctx, &conversationv1.ConverseRequest{
		Component: "echo",
		Messages:  []*conversationv1.Message{{Role: conversationv1.Role_ROLE_USER, Content: "my email is test@test.com"}},
		Scrub:     &conversationv1.Scrub{Inputs: true},
	})
	if err != nil {
		return fmt.Errorf("converse: %w", err)
	}
	if len(res.GetChoices()) != 1 {
		return fmt.Errorf("converse: %d choices, want 1", len(res.GetChoices()))
	}
	c := res.GetChoices()[0]
	u := res.GetUsage()
	return errors.Join(
		check("converse", c.GetMessage().GetContent(), "my email is <EMAIL_ADDRESS>"),
		check("finish", c.GetFinishReason(), "stop"),
		check("usage", fmt.Sprintf("%d+%d=%d tokens", u.GetPromptTokens(), u.GetCompletionTokens(), u.GetTotalTokens()), "4+4=8 tokens"),
	)
}

// stream reads ConverseStream to its end: content deltas, then a finish reason and usage.
func stream(ctx context.Context, client conversationv1connect.ConversationServiceClient) error {
	s, err := client.ConverseStream(ctx, &conversationv1.ConverseStreamRequest{Request: &conversationv1.ConverseRequest{
		Component: "echo",
		Messages:  []*conversationv1.Message{{Role: conversationv1.Role_ROLE_USER, Content: "hello from a stream"}},
	}})
	if err != nil {
		return fmt.Errorf("stream: %w", err)
	}
	defer func() { _ = s.Close() }()
	var content strings.Builder
	var finish string
	var usage *conversationv1.Usage
	for s.Receive() {
		m := s.Msg()
		content.WriteString(m.GetContentDelta())
		finish = cmp.Or(m.GetFinishReason(), finish)
		if m.GetUsage() != nil {
			usage = m.GetUsage()
		}
	}
	if err := s.Err(); err != nil {
		return fmt.Errorf("stream: %w", err)
	}
	return errors.Join(
		check("stream", content.String(), "hello from a stream"),
		check("finish", finish, "stop"),
		check("usage", fmt.Sprintf("%d+%d=%d tokens", usage.GetPromptTokens(), usage.GetCompletionTokens(), usage.GetTotalTokens()), "4+4=8 tokens"),
	)
}

// tokenInterceptor sends the API token, when there is one, on every call.
type tokenInterceptor string

func (t tokenInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if t != "" {
			req.Header().Set("dapr-api-token", string(t))
		}
		return next(ctx, req)
	}
}

func (t tokenInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		if t != "" {
			conn.RequestHeader().Set("dapr-api-token", string(t))
		}
		return conn
	}
}

func (t tokenInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// check prints got under label and fails when it is not want.
func check(label, got, want string) error {
	fmt.Printf("%-9s %s\n", label+":", got)
	if got != want {
		return fmt.Errorf("%s: got %q, want %q", label, got, want)
	}
	return nil
}
