package tilt_test

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.starlark.net/starlark"
	"go.starlark.net/syntax"
	"go.yaml.in/yaml/v3"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// restartProcess is the Tilt extension that provides docker_build_with_restart.
const restartProcess = "ext://restart_process"

// designPorts are the ports of DESIGN.md by service; the first serves /healthz.
func designPorts() map[string][]int {
	return map[string][]int{
		"router":          {3500, 50001},
		"pii-scrubber":    {3510},
		"cache":           {3520},
		"provider-worker": {3530},
		"audit":           {3540},
	}
}

// tiltDialect is the Starlark dialect Tilt evaluates Tiltfiles with
// (tilt internal/tiltfile/starkit/environment.go).
func tiltDialect() *syntax.FileOptions {
	return &syntax.FileOptions{Set: true, GlobalReassign: true, Recursion: true, TopLevelControl: true, While: true}
}

// object is what a stub builtin records and returns: the builtin's name and its
// arguments keyed by Tilt's parameter names.
type object struct {
	fn   string
	args map[string]starlark.Value
}

// String implements starlark.Value.
func (o *object) String() string { return o.fn + "(...)" }

// Type implements starlark.Value.
func (o *object) Type() string { return o.fn }

// Freeze implements starlark.Value.
func (o *object) Freeze() {}

// Truth implements starlark.Value.
func (o *object) Truth() starlark.Bool { return starlark.True }

// Hash implements starlark.Value.
func (o *object) Hash() (uint32, error) { return 0, fmt.Errorf("unhashable type: %s", o.fn) }

// str returns the string argument name, or "".
func (o *object) str(name string) string {
	s, _ := starlark.AsString(o.args[name])
	return s
}

// strs returns the list-of-strings argument name (a lone string counts as one).
func (o *object) strs(name string) []string {
	v, ok := o.args[name]
	if !ok {
		return nil
	}
	if s, ok := starlark.AsString(v); ok {
		return []string{s}
	}
	var out []string
	if it, ok := v.(starlark.Iterable); ok {
		iter := it.Iterate()
		defer iter.Done()
		var x starlark.Value
		for iter.Next(&x) {
			s, _ := starlark.AsString(x)
			out = append(out, s)
		}
	}
	return out
}

// list returns the elements of the list argument name (a lone value counts as one).
func (o *object) list(name string) []starlark.Value {
	v, ok := o.args[name]
	if !ok || v == starlark.None {
		return nil
	}
	if _, isString := v.(starlark.String); !isString {
		if it, ok := v.(starlark.Iterable); ok {
			var out []starlark.Value
			iter := it.Iterate()
			defer iter.Done()
			var x starlark.Value
			for iter.Next(&x) {
				out = append(out, x)
			}
			return out
		}
	}
	return []starlark.Value{v}
}

// harness evaluates Tiltfiles with stub builtins and records every call.
type harness struct {
	calls []*object
	loads []string
}

// stub returns a builtin that accepts exactly the parameters params (Tilt's names in
// positional order, "name?" for optional ones), rejects anything else, and records
// the call.
func (h *harness) stub(fn string, params ...string) *starlark.Builtin {
	return starlark.NewBuiltin(fn, func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		values := make([]starlark.Value, len(params))
		pairs := make([]any, 0, 2*len(params))
		for i, p := range params {
			pairs = append(pairs, p, &values[i])
		}
		if err := starlark.UnpackArgs(b.Name(), args, kwargs, pairs...); err != nil {
			return nil, err
		}
		call := &object{fn: fn, args: make(map[string]starlark.Value)}
		for i, p := range params {
			if values[i] != nil {
				call.args[strings.TrimSuffix(p, "?")] = values[i]
			}
		}
		h.calls = append(h.calls, call)
		return call, nil
	})
}

// dockerBuildParams are docker_build's parameters after ref and context.
func dockerBuildParams() []string {
	return []string{
		"build_args?", "dockerfile?", "dockerfile_contents?", "live_update?", "match_in_env_vars?",
		"ignore?", "only?", "entrypoint?", "target?", "ssh?", "network?", "secret?", "extra_tag?",
		"container_args?", "cache_from?", "pull?", "platform?", "extra_hosts?",
	}
}

// predeclared returns the Tilt builtins the Tiltfiles use, with Tilt's signatures
// (docs.tilt.dev/api.html).
func (h *harness) predeclared() starlark.StringDict {
	return starlark.StringDict{
		"TRIGGER_MODE_AUTO":   starlark.String("TRIGGER_MODE_AUTO"),
		"TRIGGER_MODE_MANUAL": starlark.String("TRIGGER_MODE_MANUAL"),
		"version_settings":    h.stub("version_settings", "check_updates?", "constraint?"),
		"include":             h.stub("include", "path"),
		"k8s_yaml":            h.stub("k8s_yaml", "yaml", "allow_duplicates?"),
		"kustomize":           h.stub("kustomize", "pathToDir", "kustomize_bin?", "flags?"),
		"k8s_resource": h.stub("k8s_resource", "workload?", "new_name?", "port_forwards?",
			"extra_pod_selectors?", "trigger_mode?", "resource_deps?", "objects?", "auto_init?",
			"pod_readiness?", "links?", "labels?", "discovery_strategy?"),
		"local_resource": h.stub("local_resource", "name", "cmd?", "deps?", "trigger_mode?",
			"resource_deps?", "ignore?", "auto_init?", "serve_cmd?", "cmd_bat?", "serve_cmd_bat?",
			"allow_parallel?", "links?", "tags?", "env?", "serve_env?", "readiness_probe?", "dir?",
			"serve_dir?", "labels?"),
		"docker_build": h.stub("docker_build", append([]string{"ref", "context"}, dockerBuildParams()...)...),
		"sync":         h.stub("sync", "local_path", "remote_path"),
		"run":          h.stub("run", "cmd", "trigger?", "echo_off?"),
		"port_forward": h.stub("port_forward", "local_port", "container_port?", "name?", "link_path?", "host?"),
		"read_file":    starlark.NewBuiltin("read_file", readFile),
		"listdir":      starlark.NewBuiltin("listdir", listdir),
	}
}

// listdir is Tilt's listdir(directory, recursive=False): the paths of the files in
// directory (Tilt returns absolute paths; these keep the directory as given, which the
// Tiltfile must not rely on either way), sorted.
func listdir(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var dir string
	var recursive bool
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "directory", &dir, "recursive?", &recursive); err != nil {
		return nil, err
	}
	if recursive {
		return nil, errors.New("listdir: recursive is not stubbed")
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []starlark.Value
	for _, e := range entries {
		if !e.IsDir() {
			abs, err := filepath.Abs(filepath.Join(dir, e.Name()))
			if err != nil {
				return nil, err
			}
			out = append(out, starlark.String(abs))
		}
	}
	return starlark.NewList(out), nil
}

// readFile is Tilt's read_file(file_path, default=None): the file's contents (relative
// to the Tiltfile's directory, which is the test's), or default when it is missing.
func readFile(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var path string
	var def starlark.Value
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "file_path", &path, "default?", &def); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && def != nil && def != starlark.None {
		return def, nil
	}
	if err != nil {
		return nil, err
	}
	return starlark.String(data), nil
}

// load answers load() like Tilt would for the extensions the Tiltfiles use.
func (h *harness) load(_ *starlark.Thread, module string) (starlark.StringDict, error) {
	h.loads = append(h.loads, module)
	if module != restartProcess {
		return nil, fmt.Errorf("load(%q): no stub for this module in tiltfile_test.go", module)
	}
	// tilt-extensions/restart_process: docker_build_with_restart(ref, context,
	// entrypoint, live_update, base_suffix, restart_file, trigger, exit_policy, **kwargs),
	// where kwargs go to docker_build.
	params := append([]string{"ref", "context", "entrypoint", "live_update", "base_suffix?",
		"restart_file?", "trigger?", "exit_policy?"}, slices.DeleteFunc(dockerBuildParams(), func(p string) bool {
		return p == "live_update?" || p == "entrypoint?"
	})...)
	return starlark.StringDict{"docker_build_with_restart": h.stub("docker_build_with_restart", params...)}, nil
}

// eval executes the Tiltfile src under Tilt's dialect and returns its recorded calls.
func eval(t *testing.T, filename string, src any) (*harness, error) {
	t.Helper()
	h := &harness{}
	thread := &starlark.Thread{
		Name:  filename,
		Load:  h.load,
		Print: func(_ *starlark.Thread, msg string) { t.Log(msg) },
	}
	_, err := starlark.ExecFileOptions(tiltDialect(), thread, filename, src, h.predeclared())
	return h, err
}

// called returns the recorded calls of builtin fn.
func (h *harness) called(fn string) []*object {
	var out []*object
	for _, c := range h.calls {
		if c.fn == fn {
			out = append(out, c)
		}
	}
	return out
}

// find returns the call of fn whose argument key equals value, or nil.
func (h *harness) find(fn, key, value string) *object {
	for _, c := range h.called(fn) {
		if c.str(key) == value {
			return c
		}
	}
	return nil
}

// portForwards returns the local and container port of each of r's port forwards.
func portForwards(t *testing.T, r *object) map[int]int {
	t.Helper()
	out := make(map[int]int)
	for _, v := range r.list("port_forwards") {
		switch v := v.(type) {
		case starlark.Int:
			p, ok := v.Int64()
			require.True(t, ok)
			out[int(p)] = int(p)
		case starlark.String:
			// "port", "local:container" or "host:local:container".
			parts := strings.Split(string(v), ":")
			require.LessOrEqual(t, len(parts), 3, "port forward %q", v)
			local, err := strconv.Atoi(parts[max(0, len(parts)-2)])
			require.NoError(t, err, "port forward %q", v)
			remote, err := strconv.Atoi(parts[len(parts)-1])
			require.NoError(t, err, "port forward %q", v)
			out[local] = remote
		case *object:
			require.Equal(t, "port_forward", v.fn)
			local, err := starlark.AsInt32(v.args["local_port"])
			require.NoError(t, err)
			remote := local
			if c, ok := v.args["container_port"]; ok && c != starlark.None {
				remote, err = starlark.AsInt32(c)
				require.NoError(t, err)
			}
			out[local] = remote
		default:
			require.Failf(t, "port forward", "unsupported value %s of type %s", v, v.Type())
		}
	}
	return out
}

// repoServices lists the service directories under ../services (those with a go.mod).
func repoServices(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join("..", "services"))
	require.NoError(t, err)
	var out []string
	for _, e := range entries {
		if _, err := os.Stat(filepath.Join("..", "services", e.Name(), "go.mod")); e.IsDir() && err == nil {
			out = append(out, e.Name())
		}
	}
	require.NotEmpty(t, out)
	return out
}

// dockerfileSources returns the paths, relative to tilt/, that the COPY lines of
// services/<name>/Dockerfile copy from its context, the repository root.
func dockerfileSources(t *testing.T, name string) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "services", name, "Dockerfile"))
	require.NoError(t, err)
	var out []string
	for line := range strings.Lines(string(data)) {
		words := strings.Fields(line)
		if len(words) == 0 || words[0] != "COPY" || strings.Contains(line, "--from") {
			continue
		}
		words = slices.DeleteFunc(words[1:], func(w string) bool { return strings.HasPrefix(w, "--") })
		require.GreaterOrEqual(t, len(words), 2, "services/%s/Dockerfile: %s", name, line)
		for _, src := range words[:len(words)-1] {
			out = append(out, filepath.ToSlash(filepath.Join("..", src)))
		}
	}
	require.Contains(t, out, "../services/"+name, "services/%s/Dockerfile does not copy the service", name)
	return out
}

// evalTiltfile evaluates ./Tiltfile and fails the test on any error.
func evalTiltfile(t *testing.T) *harness {
	t.Helper()
	src, err := os.ReadFile("Tiltfile")
	require.NoError(t, err)
	h, err := eval(t, "Tiltfile", src)
	require.NoError(t, err)
	return h
}

func TestTiltfileServices(t *testing.T) {
	t.Parallel()
	h := evalTiltfile(t)
	ports := designPorts()
	for _, name := range repoServices(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			want, ok := ports[name]
			require.True(t, ok, "services/%s has no ports in designPorts: add them (DESIGN.md), and to the Tiltfile", name)
			binary := "build/" + name

			compile := h.find("local_resource", "name", name+"-compile")
			require.NotNil(t, compile, "no local_resource %s-compile", name)
			cmd := compile.str("cmd")
			require.Contains(t, cmd, "./services/"+name+"/cmd/"+name, "compile command")
			require.Contains(t, cmd, "-o tilt/"+binary, "compile command output")
			require.Contains(t, cmd, "GOOS=linux", "compile command")
			require.Contains(t, cmd, "CGO_ENABLED=0", "compile command")
			// The compile step watches what the service's image is built from, and the
			// workspace file the host build also reads.
			require.ElementsMatch(t, append(dockerfileSources(t, name), "../go.work"), compile.strs("deps"), "compile deps")

			image := h.find("docker_build_with_restart", "ref", "parley/"+name)
			require.NotNil(t, image, "no docker_build_with_restart parley/%s", name)
			require.Equal(t, ".", image.str("context"))
			require.Equal(t, []string{"/app/" + name}, image.strs("entrypoint"))
			require.Equal(t, []string{"./" + binary}, image.strs("only"))
			require.FileExists(t, image.str("dockerfile"))
			syncs := image.list("live_update")
			require.Len(t, syncs, 1, "live_update")
			sync, ok := syncs[0].(*object)
			require.True(t, ok && sync.fn == "sync", "live_update step %s", syncs[0])
			require.Equal(t, "./"+binary, sync.str("local_path"))
			require.Equal(t, "/app/"+name, sync.str("remote_path"))
			args, ok := image.args["build_args"].(*starlark.Dict)
			require.True(t, ok, "build_args")
			service, found, err := args.Get(starlark.String("SERVICE"))
			require.NoError(t, err)
			require.True(t, found, "build_args SERVICE")
			require.Equal(t, starlark.String(name), service)

			if name == "provider-worker" {
				// One resource per worker pool, the first forwarded on the service's
				// port, the next ones on the ports after it.
				for i, c := range componentFiles(t) {
					res := h.find("k8s_resource", "workload", name+"-"+c)
					require.NotNil(t, res, "no k8s_resource %s-%s for the pool of components/%s.yaml", name, c, c)
					require.Equal(t, map[int]int{want[0] + i: want[0]}, portForwards(t, res), "port forwards of pool %s", c)
					require.Contains(t, res.strs("resource_deps"), name+"-compile")
					require.NotEmpty(t, res.strs("labels"))
				}
				return
			}
			res := h.find("k8s_resource", "workload", name)
			require.NotNil(t, res, "no k8s_resource %s", name)
			forwards := portForwards(t, res)
			for _, p := range want {
				require.Equal(t, p, forwards[p], "port forward %d", p)
			}
			require.Contains(t, res.strs("resource_deps"), name+"-compile")
			require.NotEmpty(t, res.strs("labels"))
		})
	}
}

func TestTiltfileResources(t *testing.T) {
	t.Parallel()
	h := evalTiltfile(t)

	require.Equal(t, []string{restartProcess}, h.loads)
	require.Len(t, h.called("version_settings"), 1)

	yamls := h.called("k8s_yaml")
	require.Len(t, yamls, 1, "k8s_yaml")
	k, ok := yamls[0].args["yaml"].(*object)
	require.True(t, ok && k.fn == "kustomize", "k8s_yaml takes kustomize(...)")
	require.Equal(t, "../deploy/overlays/dev", k.str("pathToDir"))

	names := make(map[string]bool)
	for _, r := range h.called("local_resource") {
		require.False(t, names[r.str("name")], "duplicate resource %s", r.str("name"))
		names[r.str("name")] = true
		require.NotEmpty(t, r.strs("labels"), "labels of %s", r.str("name"))
	}
	for _, r := range h.called("k8s_resource") {
		require.False(t, names[r.str("workload")], "duplicate resource %s", r.str("workload"))
		names[r.str("workload")] = true
		require.NotEmpty(t, r.strs("labels"), "labels of %s", r.str("workload"))
	}
	for _, r := range append(h.called("local_resource"), h.called("k8s_resource")...) {
		for _, dep := range r.strs("resource_deps") {
			require.True(t, names[dep], "resource_deps names %q, which is no resource", dep)
		}
	}
	for _, r := range h.called("local_resource") {
		for _, dep := range append(r.strs("deps"), r.strs("ignore")...) {
			if strings.ContainsAny(dep, "*") {
				continue
			}
			require.True(t, pathExists(dep), "local_resource %s watches %s, which does not exist", r.str("name"), dep)
		}
	}

	overlay := loadOverlay(t, k.str("pathToDir"))
	for _, b := range h.called("docker_build_with_restart") {
		require.Contains(t, overlay.images, b.str("ref"), "image %s is built but no Deployment of the dev overlay runs it", b.str("ref"))
	}
	for _, r := range h.called("k8s_resource") {
		require.Contains(t, overlay.workloads, r.str("workload"), "k8s_resource %s names no workload of the dev overlay", r.str("workload"))
	}
	for _, name := range repoServices(t) {
		if name == "provider-worker" {
			// The dev overlay runs a pool per component file instead (deploy/pools).
			require.NotContains(t, overlay.workloads, name)
			for _, c := range componentFiles(t) {
				require.Equal(t, "Deployment", overlay.workloads[name+"-"+c], "no worker pool for components/%s.yaml in the dev overlay", c)
			}
			continue
		}
		require.Equal(t, "Deployment", overlay.workloads[name], "services/%s has no Deployment in the dev overlay", name)
	}
}

// componentFiles lists the components of deploy/components/, one per file, sorted.
func componentFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "deploy", "components", "*.yaml"))
	require.NoError(t, err)
	var out []string
	for _, f := range files {
		if name := strings.TrimSuffix(filepath.Base(f), ".yaml"); name != "kustomization" {
			out = append(out, name)
		}
	}
	require.NotEmpty(t, out)
	return out
}

// pathExists reports whether a path (relative to tilt/) exists.
func pathExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func TestRootTiltfileIncludesTiltDir(t *testing.T) {
	t.Parallel()
	src, err := os.ReadFile(filepath.Join("..", "Tiltfile"))
	require.NoError(t, err)
	h, err := eval(t, "../Tiltfile", src)
	require.NoError(t, err)
	includes := h.called("include")
	require.Len(t, includes, 1)
	require.Len(t, h.calls, 1, "the root Tiltfile should only include tilt/Tiltfile")
	require.Equal(t, "tilt/Tiltfile", filepath.Clean(includes[0].str("path")))
}

func TestHarnessRejectsBadTiltfiles(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		src  string
		want string
	}{
		{
			name: "syntax error",
			src:  "for x in [1]\n    pass\n",
			want: "want ':'",
		},
		{
			name: "misspelled keyword",
			src:  "k8s_resource('router', port_forward=3500)\n",
			want: "unexpected keyword argument \"port_forward\"",
		},
		{
			name: "unknown builtin",
			src:  "docker_compose('compose.yaml')\n",
			want: "undefined: docker_compose",
		},
		{
			name: "unknown extension",
			src:  "load('ext://helm_resource', 'helm_resource')\n",
			want: "no stub for this module",
		},
		{
			name: "missing file",
			src:  "read_file('no-such-file')\n",
			want: "no such file",
		},
		{
			name: "missing argument",
			src:  "load('ext://restart_process', 'docker_build_with_restart')\ndocker_build_with_restart('x', '.')\n",
			want: "missing argument for entrypoint",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := eval(t, "Tiltfile", tt.src)
			require.ErrorContains(t, err, tt.want)
		})
	}
}

// overlay is what the dev overlay deploys, as kustomize renders it.
type overlay struct {
	// images are the container images of Deployments and StatefulSets, without tags.
	images []string
	// workloads maps each Deployment and StatefulSet name to its kind.
	workloads map[string]string
}

// manifest is the part of a Kubernetes object that loadOverlay reads.
type manifest struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Spec struct {
		Template struct {
			Spec struct {
				Containers     []struct{ Image string } `yaml:"containers"`
				InitContainers []struct{ Image string } `yaml:"initContainers"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

// loadOverlay renders the kustomization in dir offline, as Tilt's kustomize() does, and
// collects its workloads and their images.
func loadOverlay(t *testing.T, dir string) overlay {
	t.Helper()
	abs, err := filepath.Abs(dir)
	require.NoError(t, err)
	resources, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), abs)
	require.NoError(t, err, "kustomize build %s", dir)
	o := overlay{workloads: make(map[string]string)}
	for _, res := range resources.Resources() {
		if k := res.GetKind(); k != "Deployment" && k != "StatefulSet" {
			continue
		}
		doc, err := res.AsYAML()
		require.NoError(t, err)
		var m manifest
		require.NoError(t, yaml.Unmarshal(doc, &m))
		o.workloads[m.Metadata.Name] = m.Kind
		pod := m.Spec.Template.Spec
		for _, c := range append(pod.InitContainers, pod.Containers...) {
			name := c.Image
			if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
				name = name[:i]
			}
			o.images = append(o.images, name)
		}
	}
	return o
}
