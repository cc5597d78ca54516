package deploy_test

import (
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
)

// apiKeysSecret is the Secret the component api-keys mounts into the router.
const apiKeysSecret = "parley-api-keys"

// withComponent writes a kustomization that takes overlay and the component at
// component (both relative to deploy/) and returns its directory.
func withComponent(t *testing.T, overlay, component string) string {
	t.Helper()
	root, err := filepath.Abs(".")
	require.NoError(t, err)
	dir := t.TempDir()
	// kustomize takes relative paths only.
	rel := func(p string) string {
		r, err := filepath.Rel(dir, filepath.Join(root, p))
		require.NoError(t, err)
		return r
	}
	k := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n" +
		"resources:\n  - " + rel(overlay) + "\n" +
		"components:\n  - " + rel(component) + "\n"
	require.NoError(t, os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o600))
	return dir
}

// TestAPIKeysComponent: an overlay that takes deploy/api-keys mounts the Secret
// parley-api-keys read-only into the router and no other pod or container, and points
// ROUTER_API_KEYS_FILE and ROUTER_API_KEY_PEPPER_FILE at the mounted keys.yaml and pepper;
// the Secret is the only new reference. The overlays alone never set API keys.
func TestAPIKeysComponent(t *testing.T) {
	t.Parallel()
	for _, tc := range overlayCases() {
		if tc.name == "dev" {
			continue // Tilt's cluster stays open to the developer (docs/tenants.md)
		}
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for id, tmpl := range render(t, tc.dir).workloads() {
				for _, c := range slices.Concat(tmpl.Spec.InitContainers, tmpl.Spec.Containers) {
					for _, e := range c.Env {
						require.False(t, strings.HasPrefix(e.Name, "ROUTER_API_KEY"), "%s alone: %s/%s sets %s", tc.dir, id, c.Name, e.Name)
					}
				}
			}

			r := render(t, withComponent(t, tc.dir, "api-keys"))
			testReferences(t, r, append(slices.Clone(tc.external), apiKeysSecret))

			var found []string
			for id, tmpl := range r.workloads() {
				spec := tmpl.Spec
				var vol *corev1.Volume
				for i, v := range spec.Volumes {
					uses := v.Secret != nil && v.Secret.SecretName == apiKeysSecret
					if v.Projected != nil {
						for _, src := range v.Projected.Sources {
							uses = uses || (src.Secret != nil && src.Secret.Name == apiKeysSecret)
						}
					}
					if uses {
						require.Nil(t, vol, "%s: one volume of %s", id, apiKeysSecret)
						vol = &spec.Volumes[i]
					}
				}
				containers := slices.Concat(spec.InitContainers, spec.Containers)
				if vol == nil {
					for _, c := range containers {
						for _, e := range c.Env {
							require.False(t, strings.HasPrefix(e.Name, "ROUTER_API_KEY"), "%s/%s sets %s", id, c.Name, e.Name)
						}
					}
					continue
				}
				found = append(found, id)
				require.Equal(t, "Deployment/router", id, "only the router mounts %s", apiKeysSecret)
				require.NotNil(t, vol.Secret, "a plain Secret volume")
				require.NotNil(t, vol.Secret.DefaultMode)
				require.Equal(t, int32(0o440), *vol.Secret.DefaultMode)
				require.True(t, vol.Secret.Optional == nil || !*vol.Secret.Optional, "a missing Secret stops the pod rather than run open")
				files := map[string]string{} // file path in the volume -> Secret key
				for _, it := range vol.Secret.Items {
					files[it.Path] = it.Key
				}
				for _, c := range containers {
					var mounts []corev1.VolumeMount
					for _, m := range c.VolumeMounts {
						if m.Name == vol.Name {
							mounts = append(mounts, m)
						}
					}
					if c.Name != "router" {
						require.Empty(t, mounts, "%s/%s mounts the API keys", id, c.Name)
						continue
					}
					require.Len(t, mounts, 1, "router mounts the API keys once")
					m := mounts[0]
					require.True(t, m.ReadOnly, "mounted read-only")
					require.Empty(t, m.SubPath, "the whole directory, so Secret updates reach the pod")
					for env, key := range map[string]string{"ROUTER_API_KEYS_FILE": "keys.yaml", "ROUTER_API_KEY_PEPPER_FILE": "pepper"} {
						e, ok := envValue(c, env)
						require.True(t, ok, "router sets %s", env)
						require.Nil(t, e.ValueFrom, env)
						rel, ok := strings.CutPrefix(e.Value, strings.TrimSuffix(m.MountPath, "/")+"/")
						require.True(t, ok, "%s=%s is under the mount %s", env, e.Value, m.MountPath)
						require.Equal(t, path.Clean(rel), rel, env)
						if len(files) > 0 {
							require.Equal(t, key, files[rel], "%s names the Secret's key %s", env, key)
						} else {
							require.Equal(t, key, rel, "%s names the Secret's key %s", env, key)
						}
					}
					_, inline := envValue(c, "ROUTER_API_KEY_PEPPER")
					require.False(t, inline, "the pepper comes from the Secret's file only")
				}
			}
			require.Equal(t, []string{"Deployment/router"}, found)
		})
	}
}
