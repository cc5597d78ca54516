package component_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/parleyhq/parley/libs/component"
)

// writeFiles writes files (paths relative to root) and returns nothing; it fails the test on error.
func writeFiles(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(root, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
	}
}

func envFrom(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

const echoYAML = `apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: echo
spec:
  type: conversation.echo
  version: v1
`

func TestLoadDir(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name    string
		files   map[string]string // relative to the components directory
		secrets map[string]string // relative to the secrets directory; empty means no SecretsDir
		env     map[string]string
		want    []component.Component // File is relative to the components directory
		wantErr string                // exact message, with the temp directory replaced by "<tmp>"
	}{
		{
			name: "empty directory",
		},
		{
			name:  "minimal echo",
			files: map[string]string{"echo.yaml": echoYAML},
			want: []component.Component{{
				Name: "echo", Type: "conversation.echo", Version: "v1", File: "echo.yaml",
				Metadata: map[string]string{},
			}},
		},
		{
			name: "scalar values are stringified",
			files: map[string]string{"openai.yaml": `apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: openai
spec:
  type: conversation.openai
  version: v1
  metadata:
  - name: key
    value: "sk-test"
  - name: model
    value: gpt-4.1-mini
  - name: maxTokens
    value: 256
  - name: temperature
    value: 0.5
  - name: stream
    value: true
  - name: empty
    value:
  - name: nothing
  - name: quoted
    value: "10"
  - name: block
    value: |-
      line one
      line two
`},
			want: []component.Component{{
				Name: "openai", Type: "conversation.openai", Version: "v1", File: "openai.yaml",
				Metadata: map[string]string{
					"key": "sk-test", "model": "gpt-4.1-mini", "maxTokens": "256", "temperature": "0.5",
					"stream": "true", "empty": "", "nothing": "", "quoted": "10", "block": "line one\nline two",
				},
			}},
		},
		{
			name: "multi-document file skips other kinds and types",
			files: map[string]string{"all.yaml": `apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: myresiliency
spec:
  policies:
    timeouts:
      general: 5s
  targets:
    components:
      openai:
        outbound:
          timeout: general
---
apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: appconfig
spec:
  tracing:
    samplingRate: "1"
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: statestore
spec:
  type: state.redis
  version: v1
  metadata:
  - name: redisHost
    secretKeyRef: {name: redis, key: host}
---
# a comment-only document
---
- a list document
---
just a scalar
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: anthropic
spec:
  type: conversation.anthropic
  version: v1
  metadata:
  - name: key
    value: ak
---
` + echoYAML},
			want: []component.Component{
				{
					Name: "anthropic", Type: "conversation.anthropic", Version: "v1", File: "all.yaml",
					Metadata: map[string]string{"key": "ak"},
				},
				{
					Name: "echo", Type: "conversation.echo", Version: "v1", File: "all.yaml",
					Metadata: map[string]string{},
				},
			},
		},
		{
			name: "only other kinds",
			files: map[string]string{
				"resiliency.yaml": "apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata:\n  name: r\nspec: {}\n",
				"pubsub.yml":      "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: p\nspec:\n  type: pubsub.redis\n  version: v1\n",
				"no-type.yaml":    "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: x\nspec:\n  version: v1\n",
				"spec-list.yaml":  "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: y\nspec: [1, 2]\n",
				"empty.yaml":      "",
				"other-kind.yaml": "apiVersion: dapr.io/v1alpha1\nkind: Subscription\nmetadata:\n  name: s\nspec:\n  type: conversation.echo\n",
			},
		},
		{
			name: "files sorted, only yaml and yml, no recursion",
			files: map[string]string{
				"b.yaml":          strings.Replace(echoYAML, "name: echo", "name: b", 1),
				"a.yml":           strings.Replace(echoYAML, "name: echo", "name: a", 1),
				"C.YAML":          strings.Replace(echoYAML, "name: echo", "name: c", 1),
				"README.md":       echoYAML,
				"echo.json":       echoYAML,
				"echo.yaml.bak":   echoYAML,
				"sub/echo.yaml":   strings.Replace(echoYAML, "name: echo", "name: nested", 1),
				"dir.yaml/x.yaml": strings.Replace(echoYAML, "name: echo", "name: nested2", 1),
			},
			want: []component.Component{
				{Name: "c", Type: "conversation.echo", Version: "v1", File: "C.YAML", Metadata: map[string]string{}},
				{Name: "a", Type: "conversation.echo", Version: "v1", File: "a.yml", Metadata: map[string]string{}},
				{Name: "b", Type: "conversation.echo", Version: "v1", File: "b.yaml", Metadata: map[string]string{}},
			},
		},
		{
			name: "type and version are lower-cased; empty and v0 versions",
			files: map[string]string{
				"a.yaml": "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: a\nspec:\n  type: Conversation.AWS.Bedrock\n  version: V1\n",
				"b.yaml": "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: b\nspec:\n  type: conversation.ollama\n",
				"c.yaml": "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: c\nspec:\n  type: conversation.echo\n  version: v0\n",
			},
			want: []component.Component{
				{Name: "a", Type: "conversation.aws.bedrock", Version: "v1", File: "a.yaml", Metadata: map[string]string{}},
				{Name: "b", Type: "conversation.ollama", Version: "", File: "b.yaml", Metadata: map[string]string{}},
				{Name: "c", Type: "conversation.echo", Version: "v0", File: "c.yaml", Metadata: map[string]string{}},
			},
		},
		{
			name: "every provider with its required metadata",
			files: map[string]string{"all.yaml": joinDocs(
				comp("openai", "openai", "key", "k"),
				comp("azure", "openai", "key", "k", "apiType", "Azure", "endpoint", "https://x.openai.azure.com", "apiVersion", "2024-06-01"),
				comp("anthropic", "anthropic", "key", "k"),
				comp("foundry", "anthropic", "key", "k", "apiType", "foundry", "endpoint", "https://r.services.ai.azure.com/anthropic/v1"),
				comp("bedrock", "aws.bedrock"),
				comp("deepseek", "deepseek", "KEY", "k"),
				comp("huggingface", "huggingface", "key", "k"),
				comp("mistral", "mistral", "key", "k"),
				comp("echo", "echo"),
				comp("googleai", "googleai", "Key", "k"),
				comp("ollama", "ollama"),
			)},
			want: []component.Component{
				{Name: "openai", Type: "conversation.openai", Version: "v1", File: "all.yaml", Metadata: map[string]string{"key": "k"}},
				{Name: "azure", Type: "conversation.openai", Version: "v1", File: "all.yaml", Metadata: map[string]string{
					"key": "k", "apiType": "Azure", "endpoint": "https://x.openai.azure.com", "apiVersion": "2024-06-01",
				}},
				{Name: "anthropic", Type: "conversation.anthropic", Version: "v1", File: "all.yaml", Metadata: map[string]string{"key": "k"}},
				{Name: "foundry", Type: "conversation.anthropic", Version: "v1", File: "all.yaml", Metadata: map[string]string{
					"key": "k", "apiType": "foundry", "endpoint": "https://r.services.ai.azure.com/anthropic/v1",
				}},
				{Name: "bedrock", Type: "conversation.aws.bedrock", Version: "v1", File: "all.yaml", Metadata: map[string]string{}},
				{Name: "deepseek", Type: "conversation.deepseek", Version: "v1", File: "all.yaml", Metadata: map[string]string{"KEY": "k"}},
				{Name: "huggingface", Type: "conversation.huggingface", Version: "v1", File: "all.yaml", Metadata: map[string]string{"key": "k"}},
				{Name: "mistral", Type: "conversation.mistral", Version: "v1", File: "all.yaml", Metadata: map[string]string{"key": "k"}},
				{Name: "echo", Type: "conversation.echo", Version: "v1", File: "all.yaml", Metadata: map[string]string{}},
				{Name: "googleai", Type: "conversation.googleai", Version: "v1", File: "all.yaml", Metadata: map[string]string{"Key": "k"}},
				{Name: "ollama", Type: "conversation.ollama", Version: "v1", File: "all.yaml", Metadata: map[string]string{}},
			},
		},
		{
			name: "missing required metadata",
			files: map[string]string{"all.yaml": joinDocs(
				comp("openai", "openai"),
				comp("anthropic", "anthropic", "key", ""),
				comp("deepseek", "deepseek"),
				comp("googleai", "googleai"),
				comp("huggingface", "huggingface"),
				comp("mistral", "mistral"),
				comp("azure", "openai", "key", "k", "apiType", "azure"),
				comp("azure2", "openai", "key", "k", "apitype", "AZURE", "endpoint", "https://e"),
				comp("foundry", "anthropic", "key", "k", "apiType", "foundry"),
			)},
			wantErr: strings.Join([]string{
				`<tmp>/all.yaml: component "openai": metadata "key": required by conversation.openai`,
				`<tmp>/all.yaml: component "anthropic": metadata "key": required by conversation.anthropic`,
				`<tmp>/all.yaml: component "deepseek": metadata "key": required by conversation.deepseek`,
				`<tmp>/all.yaml: component "googleai": metadata "key": required by conversation.googleai`,
				`<tmp>/all.yaml: component "huggingface": metadata "key": required by conversation.huggingface`,
				`<tmp>/all.yaml: component "mistral": metadata "key": required by conversation.mistral`,
				`<tmp>/all.yaml: component "azure": metadata "endpoint": required when apiType is azure`,
				`<tmp>/all.yaml: component "azure": metadata "apiVersion": required when apiType is azure`,
				`<tmp>/all.yaml: component "azure2": metadata "apiVersion": required when apiType is azure`,
				`<tmp>/all.yaml: component "foundry": metadata "endpoint": required when apiType is foundry`,
			}, "\n"),
		},
		{
			name: "invalid header fields",
			files: map[string]string{"bad.yaml": joinDocs(
				"apiVersion: dapr.io/v1\nkind: Component\nmetadata:\n  name: a\nspec:\n  type: conversation.echo\n",
				"kind: Component\nmetadata:\n  name: b\nspec:\n  type: conversation.echo\n",
				"apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {}\nspec:\n  type: conversation.echo\n",
				"apiVersion: dapr.io/v1alpha1\nkind: Component\nspec:\n  type: conversation.echo\n",
				"apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: [x]\nspec:\n  type: conversation.echo\n",
				"apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: has space\nspec:\n  type: conversation.echo\n",
				"apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: bad..dots\nspec:\n  type: conversation.echo\n",
				"apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: c\nspec:\n  type: conversation.echo\n  version: v2\n",
				"apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: d\nspec:\n  type: conversation.openrouter\n  version: v1\n",
				"apiVersion: dapr.io/v1alpha1\nkind: component\nmetadata:\n  name: e\nspec:\n  type: conversation.echo\n",
				"apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: f\n  name: g\nspec:\n  type: conversation.echo\n",
				"apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: h\nspec:\n  type: conversation.echo\n  type: conversation.echo\n",
				"apiVersion: dapr.io/v1alpha1\nkind: Component\nkind: Component\nmetadata:\n  name: i\nspec:\n  type: conversation.echo\n",
				"apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: j\nspec:\n  type: conversation.echo\n  version: [v1]\n",
			)},
			wantErr: strings.Join([]string{
				`<tmp>/bad.yaml: component "a": apiVersion: "dapr.io/v1": must be "dapr.io/v1alpha1"`,
				`<tmp>/bad.yaml: component "b": apiVersion: "": must be "dapr.io/v1alpha1"`,
				`<tmp>/bad.yaml: document 3: metadata.name: required`,
				`<tmp>/bad.yaml: document 4: metadata.name: required`,
				`<tmp>/bad.yaml: document 5: metadata.name: must be a scalar, got a list`,
				`<tmp>/bad.yaml: document 6: metadata.name: "has space": must start with a letter or digit and contain only letters, digits, '-', '_' and '.'`,
				`<tmp>/bad.yaml: document 7: metadata.name: "bad..dots": must not end with '.' or contain '..'`,
				`<tmp>/bad.yaml: component "c": spec.version: "v2": unsupported version (want "", "v0" or "v1")`,
				`<tmp>/bad.yaml: component "d": spec.type: "conversation.openrouter": unsupported type (want conversation.openai, anthropic, aws.bedrock, deepseek, huggingface, mistral, echo, googleai or ollama)`,
				`<tmp>/bad.yaml: document 10: kind: "component": must be exactly "Component"`,
				`<tmp>/bad.yaml: document 11: metadata: line 73: key "name" defined twice`,
				`<tmp>/bad.yaml: component "h": spec: line 83: key "type" defined twice`,
				`<tmp>/bad.yaml: document 13: line 87: key "kind" defined twice`,
				`<tmp>/bad.yaml: component "j": spec.version: must be a scalar, got a list`,
			}, "\n"),
		},
		{
			name: "duplicate names across files and within a file",
			files: map[string]string{
				"a.yaml": echoYAML,
				"b.yaml": joinDocs(echoYAML, comp("other", "echo"), comp("other", "openai")),
			},
			wantErr: strings.Join([]string{
				`<tmp>/b.yaml: component "echo": metadata.name: duplicate component name, also defined in <tmp>/a.yaml`,
				`<tmp>/b.yaml: component "other": metadata "key": required by conversation.openai`,
				`<tmp>/b.yaml: component "other": metadata.name: duplicate component name, also defined in <tmp>/b.yaml`,
			}, "\n"),
		},
		{
			name:    "YAML syntax error",
			files:   map[string]string{"broken.yaml": "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: [unclosed\n"},
			wantErr: `<tmp>/broken.yaml: parse YAML: yaml: line 3: did not find expected ',' or ']'`,
		},
		{
			name: "invalid metadata entries",
			files: map[string]string{"m.yaml": joinDocs(
				"apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: a\nspec:\n  type: conversation.echo\n  metadata:\n    key: v\n",
				`apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: b
spec:
  type: conversation.echo
  metadata:
  - just-a-string
  - value: no name
  - name: obj
    value: {a: 1}
  - name: typo
    vaule: x
  - name: model
    value: m1
  - name: Model
    value: m2
  - name: both
    value: v
    secretKeyRef: {name: s}
  - name: badref
    secretKeyRef: plain
  - name: refnoname
    secretKeyRef: {key: k}
  - name: refextra
    secretKeyRef: {name: s, store: x}
`,
			)},
			wantErr: strings.Join([]string{
				`<tmp>/m.yaml: component "a": spec.metadata: must be a list, got a mapping`,
				`<tmp>/m.yaml: component "b": spec.metadata[0]: must be a mapping, got !!str "just-a-string"`,
				`<tmp>/m.yaml: component "b": spec.metadata[1].name: required`,
				`<tmp>/m.yaml: component "b": metadata "obj": must be a scalar, got a mapping`,
				`<tmp>/m.yaml: component "b": metadata "typo": unknown field "vaule" (want name, value, secretKeyRef)`,
				`<tmp>/m.yaml: component "b": metadata "Model": duplicate of "model" (names are case-insensitive)`,
				`<tmp>/m.yaml: component "b": metadata "both": has both value and secretKeyRef`,
				`<tmp>/m.yaml: component "b": metadata "badref": secretKeyRef: must be a mapping, got !!str "plain"`,
				`<tmp>/m.yaml: component "b": metadata "refnoname": secretKeyRef.name: required`,
				`<tmp>/m.yaml: component "b": metadata "refextra": secretKeyRef: unknown field "store" (want name, key)`,
			}, "\n"),
		},
		{
			name: "secret from environment",
			files: map[string]string{"openai.yaml": `apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: openai
spec:
  type: conversation.openai
  metadata:
  - name: key
    secretKeyRef:
      name: OPENAI_API_KEY
      key: OPENAI_API_KEY
  - name: endpoint
    secretKeyRef: {name: OPENAI_ENDPOINT}
`},
			env: map[string]string{"OPENAI_API_KEY": "sk-env\n", "OPENAI_ENDPOINT": "https://e"},
			want: []component.Component{{
				Name: "openai", Type: "conversation.openai", File: "openai.yaml",
				Metadata: map[string]string{"key": "sk-env\n", "endpoint": "https://e"},
			}},
		},
		{
			name: "secret from files first, then environment",
			files: map[string]string{"openai.yaml": `apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: openai
spec:
  type: conversation.openai
  metadata:
  - name: key
    secretKeyRef: {name: openai, key: apiKey}
  - name: endpoint
    secretKeyRef: {name: endpoint}
  - name: model
    secretKeyRef: {name: MODEL, key: model}
  - name: apiVersion
    secretKeyRef: {name: crlf, key: v}
  - name: org
    secretKeyRef: {name: org, key: id}
`},
			secrets: map[string]string{
				"openai/apiKey":     "sk-file\n\n",
				"endpoint/endpoint": "https://file",
				"crlf/v":            "2024\r\n",
				"org/id":            "",
			},
			env: map[string]string{"openai": "sk-env", "MODEL": "gpt-env", "org": "env-org"},
			want: []component.Component{{
				Name: "openai", Type: "conversation.openai", File: "openai.yaml",
				Metadata: map[string]string{
					"key": "sk-file\n", "endpoint": "https://file", "model": "gpt-env", "apiVersion": "2024", "org": "",
				},
			}},
		},
		{
			name: "unresolved and unsafe secrets",
			files: map[string]string{"openai.yaml": `apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: openai
spec:
  type: conversation.openai
  metadata:
  - name: key
    secretKeyRef: {name: missing, key: apiKey}
  - name: endpoint
    secretKeyRef: {name: .., key: passwd}
  - name: model
    secretKeyRef: {name: ok, key: a/b}
  - name: dir
    secretKeyRef: {name: ok, key: sub}
  - name: listname
    secretKeyRef: {name: [a]}
  - name: listkey
    secretKeyRef: {name: a, key: {b: c}}
`},
			secrets: map[string]string{"ok/x": "x", "ok/sub/y": "y"},
			wantErr: strings.Join([]string{
				`<tmp>/openai.yaml: component "openai": metadata "key": secretKeyRef {name: "missing", key: "apiKey"}: not found (no file <tmp>/secrets/missing/apiKey or environment variable "missing")`,
				`<tmp>/openai.yaml: component "openai": metadata "endpoint": secretKeyRef {name: "..", key: "passwd"}: name and key must be plain file names`,
				`<tmp>/openai.yaml: component "openai": metadata "model": secretKeyRef {name: "ok", key: "a/b"}: name and key must be plain file names`,
				`<tmp>/openai.yaml: component "openai": metadata "dir": secretKeyRef {name: "ok", key: "sub"}: read secret file: read <tmp>/secrets/ok/sub: is a directory`,
				`<tmp>/openai.yaml: component "openai": metadata "listname": secretKeyRef.name: must be a scalar, got a list`,
				`<tmp>/openai.yaml: component "openai": metadata "listkey": secretKeyRef.key: must be a scalar, got a mapping`,
				`<tmp>/openai.yaml: component "openai": metadata "key": required by conversation.openai`,
			}, "\n"),
		},
		{
			name: "unresolved secret without secrets directory",
			files: map[string]string{"mistral.yaml": `apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: mistral
spec:
  type: conversation.mistral
  metadata:
  - name: key
    secretKeyRef: {name: MISTRAL_KEY}
`},
			wantErr: strings.Join([]string{
				`<tmp>/mistral.yaml: component "mistral": metadata "key": secretKeyRef {name: "MISTRAL_KEY", key: "MISTRAL_KEY"}: not found (no environment variable "MISTRAL_KEY")`,
				`<tmp>/mistral.yaml: component "mistral": metadata "key": required by conversation.mistral`,
			}, "\n"),
		},
		{
			name: "cache TTL forms",
			files: map[string]string{"ttl.yaml": joinDocs(
				comp("go-duration", "openai", "key", "k", "responseCacheTTL", "10m"),
				comp("seconds", "anthropic", "key", "k", "cacheTTL", "30"),
				comp("upper", "googleai", "key", "k", "ResponseCacheTTL", "1h30m"),
				comp("alias-upper", "mistral", "key", "k", "CACHETTL", "90"),
				comp("zero", "ollama", "responseCacheTTL", "0"),
				comp("empty", "aws.bedrock", "responseCacheTTL", ""),
				comp("echo", "echo", "responseCacheTTL", "10m"),
				comp("deepseek", "deepseek", "key", "k", "cacheTTL", "10m"),
			)},
			want: []component.Component{
				{Name: "go-duration", CacheTTL: 10 * time.Minute},
				{Name: "seconds", CacheTTL: 30 * time.Second},
				{Name: "upper", CacheTTL: 90 * time.Minute},
				{Name: "alias-upper", CacheTTL: 90 * time.Second},
				{Name: "zero"},
				{Name: "empty"},
				{Name: "echo", CacheTTL: 10 * time.Minute},
				{Name: "deepseek", CacheTTL: 10 * time.Minute},
			},
		},
		{
			name: "invalid cache TTL",
			files: map[string]string{"ttl.yaml": joinDocs(
				comp("word", "openai", "key", "k", "responseCacheTTL", "abc"),
				comp("negative", "openai", "key", "k", "responseCacheTTL", "-5s"),
				comp("negative-seconds", "openai", "key", "k", "cacheTTL", "-5"),
				comp("fraction", "openai", "key", "k", "cacheTTL", "1.5"),
				comp("huge", "openai", "key", "k", "cacheTTL", "9223372036854775807"),
				comp("both", "openai", "key", "k", "cacheTTL", "1m", "responseCacheTTL", "1m"),
				comp("echo", "echo", "cacheTTL", "soon"),
			)},
			wantErr: strings.Join([]string{
				`<tmp>/ttl.yaml: component "word": metadata "responseCacheTTL": invalid duration "abc"`,
				`<tmp>/ttl.yaml: component "negative": metadata "responseCacheTTL": invalid duration "-5s": must not be negative`,
				`<tmp>/ttl.yaml: component "negative-seconds": metadata "cacheTTL": invalid duration "-5": must not be negative`,
				`<tmp>/ttl.yaml: component "fraction": metadata "cacheTTL": invalid duration "1.5"`,
				`<tmp>/ttl.yaml: component "huge": metadata "cacheTTL": invalid duration "9223372036854775807": too large`,
				`<tmp>/ttl.yaml: component "both": metadata "responseCacheTTL": conflicts with "cacheTTL" (alias)`,
				`<tmp>/ttl.yaml: component "echo": metadata "cacheTTL": invalid duration "soon"`,
			}, "\n"),
		},
		{
			name: "anchors and aliases",
			files: map[string]string{"alias.yaml": `apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: &n openai
spec:
  type: conversation.openai
  metadata:
  - name: key
    value: &k sk-anchored
  - name: model
    value: *n
  - name: fallbackKey
    value: *k
`},
			want: []component.Component{{
				Name: "openai", Type: "conversation.openai", File: "alias.yaml",
				Metadata: map[string]string{"key": "sk-anchored", "model": "openai", "fallbackKey": "sk-anchored"},
			}},
		},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tmp := t.TempDir()
			dir := filepath.Join(tmp, "components")
			require.NoError(t, os.Mkdir(dir, 0o755))
			writeFiles(t, dir, tt.files)
			opts := component.Options{LookupEnv: envFrom(tt.env)}
			if tt.secrets != nil {
				opts.SecretsDir = filepath.Join(tmp, "secrets")
				writeFiles(t, opts.SecretsDir, tt.secrets)
			}

			got, err := component.LoadDir(dir, opts)
			if tt.wantErr != "" {
				require.Error(t, err)
				require.Nil(t, got)
				msg := strings.ReplaceAll(err.Error(), dir, "<tmp>")
				msg = strings.ReplaceAll(msg, tmp, "<tmp>")
				require.Equal(t, tt.wantErr, msg)
				var ce *component.Error
				require.ErrorAs(t, err, &ce)
				return
			}
			require.NoError(t, err)
			require.Len(t, got, len(tt.want))
			for i, w := range tt.want {
				g := got[i]
				if w.Type == "" { // only the TTL is of interest
					require.Equal(t, w.Name, g.Name)
					require.Equal(t, w.CacheTTL, g.CacheTTL, w.Name)
					continue
				}
				w.File = filepath.Join(dir, w.File)
				require.Equal(t, w, g)
			}
		})
	}
}

func TestLoadDirBadDirectory(t *testing.T) {
	t.Parallel()
	tmp := t.TempDir()

	_, err := component.LoadDir(filepath.Join(tmp, "missing"), component.Options{})
	require.ErrorIs(t, err, fs.ErrNotExist)
	require.ErrorContains(t, err, "read components directory")
	require.ErrorContains(t, err, filepath.Join(tmp, "missing"))

	file := filepath.Join(tmp, "file.yaml")
	require.NoError(t, os.WriteFile(file, []byte(echoYAML), 0o600))
	_, err = component.LoadDir(file, component.Options{})
	require.ErrorContains(t, err, "read components directory")
	require.ErrorContains(t, err, file)
}

func TestLoadDirDanglingSymlink(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	require.NoError(t, os.Symlink(filepath.Join(dir, "nowhere"), filepath.Join(dir, "gone.yaml")))
	_, err := component.LoadDir(dir, component.Options{})
	require.ErrorIs(t, err, fs.ErrNotExist)
	require.ErrorContains(t, err, "gone.yaml")
}

func TestLoadDirFollowsSymlinks(t *testing.T) {
	t.Parallel()
	tmp := t.TempDir()
	writeFiles(t, tmp, map[string]string{"data/echo.yaml": echoYAML})
	dir := filepath.Join(tmp, "components")
	require.NoError(t, os.Mkdir(dir, 0o755))
	require.NoError(t, os.Symlink(filepath.Join(tmp, "data", "echo.yaml"), filepath.Join(dir, "echo.yaml")))
	got, err := component.LoadDir(dir, component.Options{})
	require.NoError(t, err)
	require.Len(t, got, 1)
	require.Equal(t, "echo", got[0].Name)
}

func TestLoadDirDefaultLookupEnv(t *testing.T) {
	t.Parallel()
	// PATH is set in any test environment; with LookupEnv nil, os.LookupEnv is used.
	path, ok := os.LookupEnv("PATH")
	if !ok {
		t.Skip("PATH is not set")
	}
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"o.yaml": `apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: o
spec:
  type: conversation.ollama
  metadata:
  - name: endpoint
    secretKeyRef: {name: PATH}
`})
	got, err := component.LoadDir(dir, component.Options{})
	require.NoError(t, err)
	require.Len(t, got, 1)
	require.Equal(t, path, got[0].Metadata["endpoint"])
}

func TestErrorUnwrap(t *testing.T) {
	t.Parallel()
	inner := errors.New("boom")
	err := &component.Error{File: "components/a.yaml", Kind: "component", Name: "a", Field: `metadata "key"`, Err: inner}
	require.ErrorIs(t, err, inner)
	require.EqualError(t, err, `components/a.yaml: component "a": metadata "key": boom`)

	err = &component.Error{File: "components/a.yaml", Document: 2, Err: inner}
	require.EqualError(t, err, `components/a.yaml: document 2: boom`)
}

// TestErrorExample checks the message format promised in the package documentation.
func TestErrorExample(t *testing.T) {
	t.Parallel()
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "components")
	writeFiles(t, dir, map[string]string{"openai.yaml": comp("openai", "openai", "key", "k", "responseCacheTTL", "abc")})
	_, err := component.LoadDir(dir, component.Options{})
	rel, relErr := filepath.Rel(tmp, dir)
	require.NoError(t, relErr)
	require.EqualError(t, errors.New(strings.ReplaceAll(err.Error(), dir, rel)),
		`components/openai.yaml: component "openai": metadata "responseCacheTTL": invalid duration "abc"`)
}

// comp renders a conversation component document with the given metadata pairs.
func comp(name, provider string, kv ...string) string {
	var b strings.Builder
	b.WriteString("apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: " + name +
		"\nspec:\n  type: conversation." + provider + "\n  version: v1\n")
	if len(kv) > 0 {
		b.WriteString("  metadata:\n")
	}
	for i := 0; i+1 < len(kv); i += 2 {
		b.WriteString("  - name: " + kv[i] + "\n    value: \"" + kv[i+1] + "\"\n")
	}
	return b.String()
}

func joinDocs(docs ...string) string {
	return strings.Join(docs, "---\n")
}

func TestLoadDirSkipSecrets(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"openai.yaml": `apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: openai
spec:
  type: conversation.openai
  metadata:
  - name: key
    secretKeyRef:
      name: OPENAI_API_KEY
      key: OPENAI_API_KEY
`})
	_, err := component.LoadDir(dir, component.Options{LookupEnv: envFrom(nil)})
	require.ErrorContains(t, err, "OPENAI_API_KEY")

	got, err := component.LoadDir(dir, component.Options{LookupEnv: envFrom(nil), SkipSecrets: true})
	require.NoError(t, err)
	require.Len(t, got, 1)
	v, ok := got[0].Get("key")
	require.True(t, ok)
	require.Equal(t, component.SecretPlaceholder, v)
}

func TestLoadDirTemplates(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"echo.yaml": `apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: echo
spec:
  type: conversation.echo
  metadata:
  - name: a
    value: "{appID}-{podName}"
  - name: b
    value: "{namespace}"
  - name: c
    value: "{uuid}/{uuid}"
  - name: d
    value: "{literal}"
`})
	got, err := component.LoadDir(dir, component.Options{LookupEnv: envFrom(map[string]string{"APP_ID": "app", "POD_NAME": "pod-1", "NAMESPACE": "ns"})})
	require.NoError(t, err)
	md := got[0].Metadata
	require.Equal(t, "app-pod-1", md["a"])
	require.Equal(t, "ns.app", md["b"])
	require.Equal(t, "{literal}", md["d"])
	ids := strings.Split(md["c"], "/")
	require.Len(t, ids, 2)
	require.NotEqual(t, ids[0], ids[1])
	for _, id := range ids {
		require.Len(t, id, 36)
	}
}

func TestLoadDirOnly(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"c.yaml": `apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: openai
spec:
  type: conversation.openai
  metadata:
  - name: key
    secretKeyRef: {name: MISSING_KEY, key: MISSING_KEY}
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: echo
spec:
  type: conversation.echo
`})
	_, err := component.LoadDir(dir, component.Options{LookupEnv: envFrom(nil)})
	require.ErrorContains(t, err, "MISSING_KEY")
	got, err := component.LoadDir(dir, component.Options{LookupEnv: envFrom(nil), Only: []string{"echo"}})
	require.NoError(t, err, "the secret of a component not served is never read")
	require.Len(t, got, 1)
	require.Equal(t, "echo", got[0].Name)
}
