package upstream

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	piiv1 "github.com/parleyhq/parley/gen/pb/parley/pii/v1"
	"github.com/parleyhq/parley/gen/pb/parley/pii/v1/piiv1connect"
	"github.com/parleyhq/parley/services/router/internal/conversation"
)

// fakeScrubClient keeps the request and answers with res.
type fakeScrubClient struct {
	piiv1connect.ScrubberServiceClient
	got *piiv1.ScrubRequest
	res *piiv1.ScrubResponse
}

func (c *fakeScrubClient) Scrub(_ context.Context, req *piiv1.ScrubRequest) (*piiv1.ScrubResponse, error) {
	c.got = req
	return c.res, nil
}

func TestScrubberPassesModeTokensAndFormats(t *testing.T) {
	t.Parallel()
	c := &fakeScrubClient{res: &piiv1.ScrubResponse{
		Results: []*piiv1.ScrubResult{{Text: "a <EMAIL_ADDRESS_2>", Findings: []*piiv1.Finding{{Entity: "EMAIL_ADDRESS", Start: 2, End: 9}}}, {Text: "{}"}},
		Tokens:  []*piiv1.Token{{Token: "<EMAIL_ADDRESS_1>", Entity: "EMAIL_ADDRESS", Value: "x@y.io"}, {Token: "<EMAIL_ADDRESS_2>", Entity: "EMAIL_ADDRESS", Value: "b@c.io"}},
	}}
	out, err := NewScrubber(c).Scrub(t.Context(), conversation.ScrubCall{
		Texts:   []string{"a b@c.io", "{}"},
		Formats: []conversation.TextFormat{conversation.FormatText, conversation.FormatJSON},
		Mode:    conversation.ScrubTokenize,
		Tokens:  []conversation.Token{{Token: "<EMAIL_ADDRESS_1>", Entity: "EMAIL_ADDRESS", Value: "x@y.io"}},
	})
	require.NoError(t, err)
	require.True(t, proto.Equal(&piiv1.ScrubRequest{
		Texts:   []string{"a b@c.io", "{}"},
		Mode:    piiv1.Mode_MODE_TOKENIZE,
		Tokens:  []*piiv1.Token{{Token: "<EMAIL_ADDRESS_1>", Entity: "EMAIL_ADDRESS", Value: "x@y.io"}},
		Formats: []piiv1.Format{piiv1.Format_FORMAT_TEXT, piiv1.Format_FORMAT_JSON},
	}, c.got), "%v", c.got)
	require.Equal(t, "a <EMAIL_ADDRESS_2>", out.Results[0].Text)
	require.Equal(t, []conversation.Finding{{Entity: "EMAIL_ADDRESS", Start: 2, End: 9}}, out.Results[0].Findings)
	require.Len(t, out.Tokens, 2)
	require.Equal(t, conversation.Token{Token: "<EMAIL_ADDRESS_2>", Entity: "EMAIL_ADDRESS", Value: "b@c.io"}, out.Tokens[1])

	// Replace mode with text only sends what it always did.
	c.res = &piiv1.ScrubResponse{Results: []*piiv1.ScrubResult{{Text: "x"}}}
	_, err = NewScrubber(c).Scrub(t.Context(), conversation.ScrubCall{Texts: []string{"x"}, Formats: []conversation.TextFormat{conversation.FormatText}})
	require.NoError(t, err)
	require.True(t, proto.Equal(&piiv1.ScrubRequest{Texts: []string{"x"}}, c.got), "%v", c.got)
}
