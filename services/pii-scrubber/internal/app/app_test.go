package app_test

import (
	"net/http"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	piiv1 "github.com/parleyhq/parley/gen/pb/parley/pii/v1"
	"github.com/parleyhq/parley/gen/pb/parley/pii/v1/piiv1connect"
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
		fx.Replace(rpcserver.Config{Addr: "127.0.0.1:0", MaxMessageBytes: 1 << 20}, app.Config{MaxTexts: 3}),
		fx.Populate(&srv))
	a.RequireStart()
	t.Cleanup(a.RequireStop)

	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	h2c := &http.Client{Transport: &http.Transport{Protocols: p}}
	for _, opts := range [][]connect.ClientOption{nil, {connect.WithGRPC()}} {
		client := piiv1connect.NewScrubberServiceClient(h2c, srv.URL(), opts...)
		res, err := client.Scrub(t.Context(), &piiv1.ScrubRequest{Texts: []string{"mail test@test.com", "nothing here", "from 10.8.9.1"}})
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
	}
}
