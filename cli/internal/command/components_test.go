package command

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// metadata is what the router's GET /v1.0/metadata answers (services/router daprapi).
const metadata = `{"id":"parley","runtimeVersion":"parley","components":[` +
	`{"name":"echo","type":"conversation.echo","version":"v1"},` +
	`{"name":"openai","type":"conversation.openai","version":"v1","capabilities":["streaming","tools"]}],"extended":{}}`

func TestParseMetadata(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		body    string
		want    []Component
		wantErr string
	}{
		{name: "router", body: metadata, want: []Component{
			{Name: "echo", Type: "conversation.echo", Version: "v1"},
			{Name: "openai", Type: "conversation.openai", Version: "v1", Capabilities: []string{"streaming", "tools"}},
		}},
		{name: "none", body: `{"components":[]}`, want: []Component{}},
		{name: "not json", body: `invalid api token`, wantErr: "is not a metadata document"},
		{name: "no components", body: `{"id":"x"}`, wantErr: "lists no components field"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseMetadata([]byte(tt.body))
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestWriteComponents(t *testing.T) {
	t.Parallel()
	list := []Component{
		{Name: "echo", Type: "conversation.echo", Version: "v1"},
		{Name: "openai", Type: "conversation.openai", Capabilities: []string{"streaming", "tools"}},
	}
	tests := []struct {
		name   string
		list   []Component
		asJSON bool
		want   string
	}{
		{name: "table", list: list, want: "" +
			"NAME    TYPE                 VERSION  CAPABILITIES\n" +
			"echo    conversation.echo    v1       -\n" +
			"openai  conversation.openai  -        streaming,tools\n"},
		{name: "empty table", want: "NAME  TYPE  VERSION  CAPABILITIES\n"},
		{name: "json", list: list, asJSON: true, want: `{
  "components": [
    {
      "name": "echo",
      "type": "conversation.echo",
      "version": "v1"
    },
    {
      "name": "openai",
      "type": "conversation.openai",
      "capabilities": [
        "streaming",
        "tools"
      ]
    }
  ]
}
`},
		{name: "empty json", asJSON: true, want: "{\n  \"components\": []\n}\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var b bytes.Buffer
			require.NoError(t, writeComponents(&b, tt.list, tt.asJSON))
			require.Equal(t, tt.want, b.String())
		})
	}
}

func TestGlobalResolve(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		flags      global
		env        map[string]string
		wantRouter string
		wantToken  string
	}{
		{name: "defaults", wantRouter: DefaultRouterURL},
		{name: "env", env: map[string]string{EnvRouterURL: "http://r:1/", EnvAPIKey: "k"}, wantRouter: "http://r:1", wantToken: "k"},
		{name: "DAPR_API_TOKEN over PARLEY_API_KEY", env: map[string]string{EnvDaprAPIToken: "d", EnvAPIKey: "k"}, wantRouter: DefaultRouterURL, wantToken: "d"},
		{name: "flags over env", flags: global{router: "http://f:2", token: "f"},
			env: map[string]string{EnvRouterURL: "http://r:1", EnvDaprAPIToken: "d"}, wantRouter: "http://f:2", wantToken: "f"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			g := tt.flags
			g.output, g.timeout = "table", time.Second
			require.NoError(t, g.resolve(IO{Getenv: func(k string) string { return tt.env[k] }}))
			require.Equal(t, tt.wantRouter, g.router)
			require.Equal(t, tt.wantToken, g.token)
		})
	}
}

// TestComponentsSendsToken runs `parley components` against an HTTP server that records
// the dapr-api-token header and answers 401 without the right one, as the router does.
func TestComponentsSendsToken(t *testing.T) {
	t.Parallel()
	var (
		mu   sync.Mutex
		seen []string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Get(TokenHeader))
		mu.Unlock()
		if r.URL.Path != metadataPath || r.Header.Get(TokenHeader) != "s3cret" {
			http.Error(w, "invalid api token", http.StatusUnauthorized)
			return
		}
		_, _ = w.Write([]byte(metadata))
	}))
	t.Cleanup(srv.Close)

	tests := []struct {
		name       string
		args       []string
		env        map[string]string
		wantCode   int
		wantOut    string
		wantErr    string
		wantHeader string
	}{
		{name: "flag", args: []string{"components", "-token", "s3cret"}, wantCode: ExitOK, wantOut: "openai", wantHeader: "s3cret"},
		{name: "env", args: []string{"components", "-json"}, env: map[string]string{EnvDaprAPIToken: "s3cret"}, wantCode: ExitOK,
			wantOut: `"name": "echo"`, wantHeader: "s3cret"},
		{name: "none", args: []string{"components"}, wantCode: ExitError,
			wantErr: "parley: components: GET /v1.0/metadata: 401 Unauthorized: invalid api token (the router wants an API token", wantHeader: ""},
		{name: "wrong", args: []string{"-token", "nope", "components"}, wantCode: ExitError,
			wantErr: "(the router refused the API token)", wantHeader: "nope"},
		{name: "stray argument", args: []string{"components", "all"}, wantCode: ExitUsage, wantErr: "components takes no arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mu.Lock()
			seen = nil
			mu.Unlock()
			env := map[string]string{EnvRouterURL: srv.URL}
			for k, v := range tt.env {
				env[k] = v
			}
			var stdout, stderr bytes.Buffer
			code := Main(t.Context(), tt.args, IO{Stdout: &stdout, Stderr: &stderr, Getenv: func(k string) string { return env[k] }})
			require.Equal(t, tt.wantCode, code, stderr.String())
			require.Contains(t, stdout.String(), tt.wantOut)
			require.Contains(t, stderr.String(), tt.wantErr)
			mu.Lock()
			defer mu.Unlock()
			if tt.wantCode == ExitUsage {
				require.Empty(t, seen)
				return
			}
			require.Equal(t, []string{tt.wantHeader}, seen)
			if tt.wantOut != "" && strings.HasPrefix(tt.wantOut, `"`) {
				require.True(t, json.Valid(stdout.Bytes()))
			}
		})
	}
}
