package app_test

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/sethvargo/go-envconfig"
	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	piiv1 "github.com/parleyhq/parley/gen/pb/parley/pii/v1"
	"github.com/parleyhq/parley/gen/pb/parley/pii/v1/piiv1connect"
	"github.com/parleyhq/parley/libs/config"
	"github.com/parleyhq/parley/libs/identity"
	"github.com/parleyhq/parley/libs/identity/identitytest"
	"github.com/parleyhq/parley/libs/platform"
	"github.com/parleyhq/parley/libs/rpcserver"
	"github.com/parleyhq/parley/services/pii-scrubber/internal/app"
)

func TestGraph(t *testing.T) {
	t.Parallel()
	require.NoError(t, fx.ValidateApp(platform.Module("pii-scrubber"), app.Module))
}

// TestScrubService boots the service in process and calls it over Connect and gRPC.
func TestScrubService(t *testing.T) {
	t.Parallel()
	var srv *rpcserver.Server
	a := fxtest.New(t, platform.Module("pii-scrubber"), app.Module,
		fx.Replace(rpcserver.Config{Addr: "127.0.0.1:0", MaxMessageBytes: 1 << 20}, app.Config{MaxTexts: 3, HashKey: "0123456789abcdef"},
			identitytest.For(t).Config(identity.Scrubber)),
		fx.Populate(&srv))
	a.RequireStart()
	t.Cleanup(a.RequireStop)

	h2c := identitytest.For(t).Client(identity.Router, identity.Scrubber)
	for _, opts := range [][]connect.ClientOption{nil, {connect.WithGRPC()}} {
		// Only routers and audit scrub.
		_, err := piiv1connect.NewScrubberServiceClient(identitytest.For(t).Client(identity.Cache, identity.Scrubber), srv.URL(), opts...).
			Scrub(t.Context(), &piiv1.ScrubRequest{Texts: []string{"mail test@test.com"}})
		require.Equal(t, connect.CodePermissionDenied, connect.CodeOf(err), "err: %v", err)
		audit := piiv1connect.NewScrubberServiceClient(identitytest.For(t).Client(identity.Audit, identity.Scrubber), srv.URL(), opts...)
		res, err := audit.Scrub(t.Context(), &piiv1.ScrubRequest{Texts: []string{"mail test@test.com"}})
		require.NoError(t, err)
		require.Equal(t, "mail <EMAIL_ADDRESS>", res.GetResults()[0].GetText())
		// Audit scrubs whole stored copies: Scrub only, never ScrubStream.
		stream, err := audit.ScrubStream(t.Context())
		require.NoError(t, err)
		_ = stream.Send(&piiv1.ScrubStreamRequest{Text: "mail test@test.com", Flush: true}) // io.EOF once refused
		_, err = stream.Receive()
		require.Equal(t, connect.CodePermissionDenied, connect.CodeOf(err), "err: %v", err)
		require.NoError(t, stream.CloseRequest())
		require.NoError(t, stream.CloseResponse())

		client := piiv1connect.NewScrubberServiceClient(h2c, srv.URL(), opts...)
		res, err = client.Scrub(t.Context(), &piiv1.ScrubRequest{Texts: []string{"mail test@test.com", "nothing here", "from 10.8.9.1"}})
		require.NoError(t, err)
		require.Len(t, res.GetResults(), 3)
		require.Equal(t, "mail <EMAIL_ADDRESS>", res.GetResults()[0].GetText())
		require.Equal(t, "nothing here", res.GetResults()[1].GetText())
		require.Empty(t, res.GetResults()[1].GetFindings())
		require.Equal(t, "from <IP>", res.GetResults()[2].GetText())
		f := res.GetResults()[0].GetFindings()
		require.Len(t, f, 1)
		require.Equal(t, "EMAIL_ADDRESS", f[0].GetEntity())
		require.EqualValues(t, 5, f[0].GetStart())
		require.EqualValues(t, 18, f[0].GetEnd())

		// Only the entities asked for.
		res, err = client.Scrub(t.Context(), &piiv1.ScrubRequest{Texts: []string{"test@test.com 10.8.9.1"}, Entities: []string{"IP"}})
		require.NoError(t, err)
		require.Equal(t, "test@test.com <IP>", res.GetResults()[0].GetText())

		_, err = client.Scrub(t.Context(), &piiv1.ScrubRequest{Texts: []string{"x"}, Entities: []string{"SHOE_SIZE"}})
		require.Equal(t, connect.CodeInvalidArgument, connect.CodeOf(err))
		require.ErrorContains(t, err, "SHOE_SIZE")

		_, err = client.Scrub(t.Context(), &piiv1.ScrubRequest{Texts: strings.Split("a,b,c,d", ",")})
		require.Equal(t, connect.CodeInvalidArgument, connect.CodeOf(err))

		testModes(t, client)
		testStream(t, client)
	}
}

// testModes covers tokenize, hash and mask mode, JSON texts and option errors.
func testModes(t *testing.T, client piiv1connect.ScrubberServiceClient) {
	t.Helper()
	res, err := client.Scrub(t.Context(), &piiv1.ScrubRequest{
		Texts: []string{"mail bob@example.com, not <EMAIL_ADDRESS_1>", `{"to":"bob@example.com","ip":"10.0.0.1"}`},
		Mode:  piiv1.Mode_MODE_TOKENIZE, Formats: []piiv1.Format{piiv1.Format_FORMAT_TEXT, piiv1.Format_FORMAT_JSON},
	})
	require.NoError(t, err)
	require.Equal(t, "mail <EMAIL_ADDRESS_2>, not <EMAIL_ADDRESS_1>", res.GetResults()[0].GetText(), "a spoofed token is never reused")
	require.JSONEq(t, `{"to":"<EMAIL_ADDRESS_2>","ip":"<IP_1>"}`, res.GetResults()[1].GetText())
	require.Len(t, res.GetTokens(), 2)
	require.Equal(t, "<EMAIL_ADDRESS_2>", res.GetTokens()[0].GetToken())
	require.Equal(t, "bob@example.com", res.GetTokens()[0].GetValue())

	// The answer of the conversation, scrubbed with the prompt's mapping.
	res, err = client.Scrub(t.Context(), &piiv1.ScrubRequest{
		Texts: []string{"Sure, I wrote to bob@example.com and carol@example.com."}, Mode: piiv1.Mode_MODE_TOKENIZE, Tokens: res.GetTokens(),
	})
	require.NoError(t, err)
	require.Equal(t, "Sure, I wrote to <EMAIL_ADDRESS_2> and <EMAIL_ADDRESS_3>.", res.GetResults()[0].GetText())
	require.Len(t, res.GetTokens(), 3)

	res, err = client.Scrub(t.Context(), &piiv1.ScrubRequest{Texts: []string{"card 4111 1111 1111 1111"}, Mode: piiv1.Mode_MODE_MASK})
	require.NoError(t, err)
	require.Equal(t, "card **** **** **** 1111", res.GetResults()[0].GetText())

	res, err = client.Scrub(t.Context(), &piiv1.ScrubRequest{Texts: []string{"bob@example.com"}, Mode: piiv1.Mode_MODE_HASH})
	require.NoError(t, err)
	require.Regexp(t, `^<EMAIL_ADDRESS:[0-9a-f]{16}>$`, res.GetResults()[0].GetText())

	for _, req := range []*piiv1.ScrubRequest{
		{Texts: []string{"x"}, Thresholds: map[string]float64{"IP": 2}},
		{Texts: []string{"x"}, Formats: []piiv1.Format{piiv1.Format_FORMAT_JSON, piiv1.Format_FORMAT_JSON}},
		{Texts: []string{"x"}, Tokens: []*piiv1.Token{{Token: "<IP_1>", Entity: "IP", Value: "10.0.0.1"}}},
		{Texts: []string{"x"}, Mode: piiv1.Mode(42)},
	} {
		_, err = client.Scrub(t.Context(), req)
		require.Equal(t, connect.CodeInvalidArgument, connect.CodeOf(err), "%v", req)
	}
}

// testStream sends a text split inside an address and a card number.
func testStream(t *testing.T, client piiv1connect.ScrubberServiceClient) {
	t.Helper()
	stream, err := client.ScrubStream(t.Context())
	require.NoError(t, err)
	text := "Hello, write to bob@exa" + "mple.com or pay with 4111 1111 " + "1111 1111. " + strings.Repeat("And more text. ", 200)
	chunks := []string{text[:23], text[23:56], text[56:100], text[100:]}
	require.NoError(t, stream.Send(&piiv1.ScrubStreamRequest{Text: chunks[0], Mode: piiv1.Mode_MODE_TOKENIZE}))
	for _, c := range chunks[1:] {
		require.NoError(t, stream.Send(&piiv1.ScrubStreamRequest{Text: c}))
	}
	require.NoError(t, stream.Send(&piiv1.ScrubStreamRequest{Flush: true}))
	require.NoError(t, stream.CloseRequest())
	var out strings.Builder
	var tokens []string
	for {
		res, err := stream.Receive()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		out.WriteString(res.GetText())
		for _, tk := range res.GetTokens() {
			tokens = append(tokens, tk.GetToken()+"="+tk.GetValue())
		}
	}
	require.NoError(t, stream.CloseResponse())
	require.Equal(t, "Hello, write to <EMAIL_ADDRESS_1> or pay with <CREDIT_CARD_1>. "+strings.Repeat("And more text. ", 200), out.String())
	require.Equal(t, []string{"<EMAIL_ADDRESS_1>=bob@example.com", "<CREDIT_CARD_1>=4111 1111 1111 1111"}, tokens)

	// Options are checked on the first message.
	stream, err = client.ScrubStream(t.Context())
	require.NoError(t, err)
	require.NoError(t, stream.Send(&piiv1.ScrubStreamRequest{Text: "x", Entities: []string{"SHOE_SIZE"}}))
	require.NoError(t, stream.CloseRequest())
	_, err = stream.Receive()
	require.Equal(t, connect.CodeInvalidArgument, connect.CodeOf(err))
	require.NoError(t, stream.CloseResponse())
}

// TestHashModeNeedsKey checks that hash mode is refused without a key.
func TestHashModeNeedsKey(t *testing.T) {
	t.Parallel()
	var srv *rpcserver.Server
	a := fxtest.New(t, platform.Module("pii-scrubber"), app.Module,
		fx.Replace(rpcserver.Config{Addr: "127.0.0.1:0", MaxMessageBytes: 1 << 20}, app.Config{MaxTexts: 3},
			identitytest.For(t).Config(identity.Scrubber)),
		fx.Populate(&srv))
	a.RequireStart()
	t.Cleanup(a.RequireStop)
	client := piiv1connect.NewScrubberServiceClient(identitytest.For(t).Client(identity.Router, identity.Scrubber), srv.URL())
	_, err := client.Scrub(t.Context(), &piiv1.ScrubRequest{Texts: []string{"bob@example.com"}, Mode: piiv1.Mode_MODE_HASH})
	require.Equal(t, connect.CodeFailedPrecondition, connect.CodeOf(err))
	require.ErrorContains(t, err, "SCRUBBER_HASH_KEY")
}

// TestConfig checks that every bad setting fails start-up naming its variable.
func TestConfig(t *testing.T) {
	t.Parallel()
	keyFile := filepath.Join(t.TempDir(), "key")
	require.NoError(t, os.WriteFile(keyFile, []byte("a-key-of-sixteen-bytes-or-more\n"), 0o600))
	shortFile := filepath.Join(t.TempDir(), "short")
	require.NoError(t, os.WriteFile(shortFile, []byte("short"), 0o600))
	tests := []struct {
		name string
		env  map[string]string
		want string // the variable named in the error; empty for none
	}{
		{"defaults", map[string]string{}, ""},
		{"everything", map[string]string{"SCRUBBER_ENTITIES": "EMAIL_ADDRESS,UK_NHS", "SCRUBBER_THRESHOLDS": "PHONE_NUMBER=0.7, IP=0.95",
			"SCRUBBER_PHONE_REGIONS": "GB,DE", "SCRUBBER_HASH_KEY_FILE": keyFile}, ""},
		{"unknown entity", map[string]string{"SCRUBBER_ENTITIES": "EMAIL_ADDRESS,PHONE"}, "SCRUBBER_ENTITIES"},
		{"threshold syntax", map[string]string{"SCRUBBER_THRESHOLDS": "PHONE_NUMBER:0.7"}, "SCRUBBER_THRESHOLDS"},
		{"threshold value", map[string]string{"SCRUBBER_THRESHOLDS": "PHONE_NUMBER=abc"}, "SCRUBBER_THRESHOLDS"},
		{"threshold range", map[string]string{"SCRUBBER_THRESHOLDS": "PHONE_NUMBER=1.5"}, "SCRUBBER_THRESHOLDS"},
		{"threshold entity", map[string]string{"SCRUBBER_THRESHOLDS": "PHONE=0.5"}, "SCRUBBER_THRESHOLDS"},
		{"phone region typo", map[string]string{"SCRUBBER_PHONE_REGIONS": "GB,UK"}, "SCRUBBER_PHONE_REGIONS"},
		{"short hash key", map[string]string{"SCRUBBER_HASH_KEY": "short"}, "SCRUBBER_HASH_KEY"},
		{"both keys", map[string]string{"SCRUBBER_HASH_KEY": "0123456789abcdef", "SCRUBBER_HASH_KEY_FILE": keyFile}, "SCRUBBER_HASH_KEY_FILE"},
		{"missing key file", map[string]string{"SCRUBBER_HASH_KEY_FILE": "/nonexistent/key"}, "SCRUBBER_HASH_KEY_FILE"},
		{"short key file", map[string]string{"SCRUBBER_HASH_KEY_FILE": shortFile}, "SCRUBBER_HASH_KEY_FILE"},
		{"max texts", map[string]string{"SCRUBBER_MAX_TEXTS": "0"}, "SCRUBBER_MAX_TEXTS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := config.LoadFrom[app.Config](t.Context(), envconfig.MapLookuper(tt.env))
			if err == nil {
				_, err = app.NewScrubber(cfg)
			}
			if tt.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.want)
		})
	}
}
