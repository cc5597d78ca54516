package providers_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/libs/component"
	"github.com/parleyhq/parley/services/provider-worker/internal/providers"
	"github.com/parleyhq/parley/services/provider-worker/provider"
)

// writeComponent writes a component file of type typ named name into dir.
func writeComponent(t *testing.T, dir, name, typ string) {
	t.Helper()
	doc := fmt.Sprintf(`apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: %s
spec:
  type: %s
  version: v1
  metadata:
  - name: key
    value: not-a-real-key
`, name, typ)
	require.NoError(t, os.WriteFile(filepath.Join(dir, name+".yaml"), []byte(doc), 0o600))
}

// load writes one component per name→type entry and loads the directory.
func load(t *testing.T, types map[string]string) []component.Component {
	t.Helper()
	dir := t.TempDir()
	for name, typ := range types {
		writeComponent(t, dir, name, typ)
	}
	comps, err := component.LoadDir(dir, component.Options{})
	require.NoError(t, err)
	return comps
}

func TestBuild(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		give      map[string]string
		wantNames []string
	}{
		{"one echo", map[string]string{"chat": "conversation.echo"}, []string{"chat"}},
		{"several echo, sorted", map[string]string{"b": "conversation.echo", "a": "conversation.echo"}, []string{"a", "b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			reg, err := providers.Build(t.Context(), load(t, tt.give), provider.Options{})
			require.NoError(t, err)
			var seen []string
			for name, p := range reg.All() {
				seen = append(seen, name)
				resp, err := p.Converse(t.Context(), &providerv1.Request{Messages: []*providerv1.Message{{
					Parts: []*providerv1.Part{{Kind: &providerv1.Part_Text{Text: "hi"}}},
				}}})
				require.NoError(t, err)
				require.Equal(t, "hi", resp.GetChoices()[0].GetContent())
			}
			require.Equal(t, tt.wantNames, seen)
		})
	}
}

func TestBuildEveryType(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	doc := func(name, typ, md string) string {
		return "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: " + name +
			"\nspec:\n  type: " + typ + "\n  metadata:\n" + md + "---\n"
	}
	key := "  - name: key\n    value: k\n"
	yaml := doc("oa", "conversation.openai", key) +
		doc("az", "conversation.openai", key+"  - name: apiType\n    value: azure\n  - name: endpoint\n    value: https://x.openai.azure.com\n  - name: apiVersion\n    value: 2024-10-21\n") +
		doc("an", "conversation.anthropic", key) +
		doc("br", "conversation.aws.bedrock", "  - name: region\n    value: us-east-1\n  - name: accessKey\n    value: a\n  - name: secretKey\n    value: s\n") +
		doc("ds", "conversation.deepseek", key) +
		doc("gg", "conversation.googleai", key) +
		doc("hf", "conversation.huggingface", key) +
		doc("mi", "conversation.mistral", key) +
		doc("ol", "conversation.ollama", "  - name: model\n    value: llama3.2\n") +
		doc("ec", "conversation.echo", "  - name: responseCacheTTL\n    value: 1m\n")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "all.yaml"), []byte(yaml), 0o600))
	comps, err := component.LoadDir(dir, component.Options{LookupEnv: func(string) (string, bool) { return "", false }})
	require.NoError(t, err)
	reg, err := providers.Build(t.Context(), comps, provider.Options{})
	require.NoError(t, err)
	var names []string
	for name, p := range reg.All() {
		require.NotNil(t, p, name)
		names = append(names, name)
	}
	require.Equal(t, []string{"an", "az", "br", "ds", "ec", "gg", "hf", "mi", "oa", "ol"}, names)
}

func TestBuildRejectsBadEndpoints(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	yaml := "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: oa\nspec:\n  type: conversation.openai\n  metadata:\n" +
		"  - name: key\n    value: k\n  - name: endpoint\n    value: file:///etc/passwd\n---\n" +
		"apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: ol\nspec:\n  type: conversation.ollama\n  metadata:\n" +
		"  - name: endpoint\n    value: http://evil.example:11434/v1\n"
	require.NoError(t, os.WriteFile(filepath.Join(dir, "bad.yaml"), []byte(yaml), 0o600))
	comps, err := component.LoadDir(dir, component.Options{LookupEnv: func(string) (string, bool) { return "", false }})
	require.NoError(t, err)
	_, err = providers.Build(t.Context(), comps, provider.Options{EndpointAllowlist: provider.ParseAllowlist("localhost")})
	require.ErrorContains(t, err, `component "oa"`)
	require.ErrorContains(t, err, `component "ol"`)
}
