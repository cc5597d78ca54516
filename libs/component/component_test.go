package component_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/parleyhq/parley/libs/component"
)

func TestComponentProvider(t *testing.T) {
	t.Parallel()
	tests := []struct {
		typ, want string
	}{
		{"conversation.openai", "openai"},
		{"conversation.aws.bedrock", "aws.bedrock"},
		{"conversation.echo", "echo"},
		{"", ""},
	}
	for _, tt := range tests {
		t.Run(tt.typ, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, component.Component{Type: tt.typ}.Provider())
		})
	}
}

func TestComponentGet(t *testing.T) {
	t.Parallel()
	c := component.Component{Metadata: map[string]string{"apiKey": "k", "ResponseCacheTTL": "10m", "empty": ""}}
	tests := []struct {
		key    string
		want   string
		wantOK bool
	}{
		{"apiKey", "k", true},
		{"APIKEY", "k", true},
		{"apikey", "k", true},
		{"responseCacheTTL", "10m", true},
		{"empty", "", true},
		{"missing", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			t.Parallel()
			got, ok := c.Get(tt.key)
			require.Equal(t, tt.wantOK, ok)
			require.Equal(t, tt.want, got)
		})
	}

	got, ok := component.Component{}.Get("key")
	require.False(t, ok)
	require.Empty(t, got)
}

func TestComponentNeverPrintsSecrets(t *testing.T) {
	t.Parallel()
	c := component.Component{
		Name: "openai", Type: "conversation.openai", Version: "v1", File: "components/openai.yaml",
		Metadata: map[string]string{"key": "sk-secret-value", "model": "gpt"}, CacheTTL: time.Minute,
	}
	for _, s := range []string{fmt.Sprint(c), fmt.Sprintf("%v", c), fmt.Sprintf("%+v", c), c.String()} {
		require.NotContains(t, s, "sk-secret-value")
		require.Contains(t, s, "openai")
	}
	require.Equal(t,
		`component "openai" (type conversation.openai, file components/openai.yaml, metadata keys [key model], cacheTTL 1m0s)`,
		c.String())

	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("loaded", "component", c)
	require.NotContains(t, buf.String(), "sk-secret-value")
	require.Contains(t, buf.String(), `"metadata_keys":["key","model"]`)
	require.Contains(t, buf.String(), `"name":"openai"`)
}

func TestCheckName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		give    string
		wantErr string
	}{
		{"chat", ""},
		{"openai-gpt_4.1", ""},
		{"0a", ""},
		{"", "must not be empty"},
		{"-a", "must start with a letter or digit"},
		{"a.*", "contain only letters"},
		{"a>", "contain only letters"},
		{"a b", "contain only letters"},
		{"a/b", "contain only letters"},
		{"a.", "must not end with '.'"},
		{"a..b", "contain '..'"},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			t.Parallel()
			err := component.CheckName(tt.give)
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}
