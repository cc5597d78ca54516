package component_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/parleyhq/parley/libs/component"
)

// FuzzLoad feeds arbitrary bytes through the YAML parsing and validation path of LoadDir. It
// must never panic; when it succeeds, every component must be a valid conversation component.
func FuzzLoad(f *testing.F) {
	f.Add([]byte(echoYAML))
	f.Add([]byte(comp("openai", "openai", "key", "k", "responseCacheTTL", "10m")))
	f.Add([]byte(joinDocs(echoYAML, "kind: Resiliency\n", comp("o", "openai", "apiType", "azure"))))
	f.Add([]byte("apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: &a x\nspec:\n  type: conversation.openai\n" +
		"  metadata:\n  - name: key\n    secretKeyRef: {name: *a, key: k}\n  - name: cacheTTL\n    value: 30\n"))
	f.Add([]byte("a: &a [*a, *a]\n"))
	f.Add([]byte("---\n---\n- [\n"))
	f.Add([]byte{})

	f.Fuzz(func(t *testing.T, data []byte) {
		tmp := t.TempDir()
		dir := filepath.Join(tmp, "components")
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "fuzz.yaml"), data, 0o600); err != nil {
			t.Fatal(err)
		}
		env := func(name string) (string, bool) { return "env-" + name, name != "" }
		comps, err := component.LoadDir(dir, component.Options{LookupEnv: env, SecretsDir: filepath.Join(tmp, "secrets")})
		if err != nil {
			if comps != nil {
				t.Fatalf("components returned with error %v", err)
			}
			return
		}
		seen := map[string]bool{}
		for _, c := range comps {
			if c.Name == "" || seen[c.Name] {
				t.Fatalf("invalid or duplicate name %q", c.Name)
			}
			seen[c.Name] = true
			if c.Provider() == c.Type || c.CacheTTL < 0 || c.Metadata == nil {
				t.Fatalf("invalid component %v", c)
			}
		}
	})
}
