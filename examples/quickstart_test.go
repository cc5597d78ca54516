package examples_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/parleyhq/parley/integration/fakeprovider"
)

// docBlock is one ```sh block of a page, with the output block under it, if any.
type docBlock struct {
	line      int    // line of the opening fence
	directive string // from <!-- quickstart-test: NAME ... --> just above it
	code      string
	want      string // the ```json or ```text block right under it
	wantLang  string
}

var directiveRE = regexp.MustCompile(`<!-- quickstart-test: ([a-z]+)[^>]*-->\s*$`)

// shellBlocks returns the ```sh blocks of a Markdown page in order.
func shellBlocks(doc string) []docBlock {
	var out []docBlock
	ms := fence.FindAllStringSubmatchIndex(doc, -1)
	for i, m := range ms {
		if doc[m[2]:m[3]] != "sh" {
			continue
		}
		b := docBlock{line: strings.Count(doc[:m[0]], "\n") + 1, code: doc[m[4]:m[5]]}
		prevEnd := 0
		if i > 0 {
			prevEnd = ms[i-1][1]
		}
		if d := directiveRE.FindStringSubmatch(doc[prevEnd:m[0]]); d != nil {
			b.directive = d[1]
		}
		if i+1 < len(ms) {
			n := ms[i+1]
			lang := doc[n[2]:n[3]]
			if (lang == "json" || lang == "text") && strings.TrimSpace(doc[m[1]:n[0]]) == "" {
				b.want, b.wantLang = doc[n[4]:n[5]], lang
			}
		}
		out = append(out, b)
	}
	return out
}

// TestQuickstart runs every ```sh block of docs/quickstart.md in order, in one shell
// session (exported variables carry over), in a scratch folder beside a link to deploy/,
// against the stack: localhost:3500 and :50001 become the stack's ports. Each block's
// output must match the block under it. Blocks marked <!-- quickstart-test: NAME --> run
// with make replaced by a recorder, and the test does what that make would have done:
// "up" (the stack is up already), "install" (builds parley into a folder on PATH),
// "restart" (restarts the router and the worker with the COMPONENTS folder and the
// shell's variables, as the launcher would). OpenAI and Ollama are two fake providers,
// reached through OPENAI_BASE_URL and OLLAMA_BASE_URL, which the page's component files
// read. Not parallel: it restarts services, and puts them back as they were at the end.
func TestQuickstart(t *testing.T) {
	need(t)
	for _, tool := range []string{"bash", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("the quickstart's commands need %s: %v", tool, err)
		}
	}
	doc, err := os.ReadFile(filepath.Join(root, "docs", "quickstart.md"))
	require.NoError(t, err)
	blocks := shellBlocks(string(doc))
	var directives []string
	for _, b := range blocks {
		if b.directive != "" {
			directives = append(directives, b.directive)
		}
	}
	require.Equal(t, []string{"up", "restart", "install", "eventually", "restart"}, directives, "the page's marked blocks")

	openai := httptest.NewServer(fakeprovider.New(fakeprovider.Options{}))
	t.Cleanup(openai.Close)
	ollama := httptest.NewServer(fakeprovider.New(fakeprovider.Options{}))
	t.Cleanup(ollama.Close)

	work := t.TempDir()
	require.NoError(t, os.Symlink(filepath.Join(root, "deploy"), filepath.Join(work, "deploy")))
	bin := filepath.Join(work, ".test-bin")
	require.NoError(t, os.Mkdir(bin, 0o755))
	sh := &session{
		t: t, dir: work, state: filepath.Join(work, ".test-state"),
		env: append(os.Environ(),
			"PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"),
			"PARLEY_ROUTER_URL="+st.URL("router"),
			"OPENAI_BASE_URL="+openai.URL+"/v1",
			"OLLAMA_BASE_URL="+ollama.URL+"/v1",
		),
		replacer: strings.NewReplacer(
			"localhost:3500", "127.0.0.1:"+strconv.Itoa(st.Ports.Router),
			"localhost:50001", "127.0.0.1:"+strconv.Itoa(st.Ports.RouterGRPC),
		),
	}
	require.NoError(t, os.WriteFile(sh.state, nil, 0o600))

	restarted := false
	for _, b := range blocks {
		if b.directive == "" || b.directive == "eventually" {
			sh.check(b)
			continue
		}
		args, env := sh.runWithMake(b)
		switch b.directive {
		case "up":
			require.Equal(t, []string{"up"}, args, "line %d", b.line)
		case "install":
			require.Equal(t, []string{"install"}, args, "line %d", b.line)
			build := exec.CommandContext(t.Context(), "go", "build", "-o", filepath.Join(bin, "parley"), "./cli/cmd/parley")
			build.Dir = root
			out, err := build.CombinedOutput()
			require.NoError(t, err, "go build parley:\n%s", out)
		case "restart":
			require.Len(t, args, 2, "line %d: make %v", b.line, args)
			require.Equal(t, "up", args[0], "line %d", b.line)
			dir, ok := strings.CutPrefix(args[1], "COMPONENTS=")
			require.True(t, ok, "line %d: make %v", b.line, args)
			restart(t, filepath.Join(work, dir), userEnv(env), !restarted)
			restarted = true
		default:
			require.FailNow(t, "unknown directive "+b.directive, "line %d", b.line)
		}
	}
}

// session is one shell session across blocks: each block runs in its own bash, which
// sources the variables the blocks before it exported and saves them again.
type session struct {
	t        *testing.T
	dir      string
	state    string
	env      []string
	replacer *strings.Replacer
}

func (s *session) script(b docBlock, prelude string) string {
	return "set -euo pipefail\nsource " + strconv.Quote(s.state) + "\n" + prelude +
		s.replacer.Replace(b.code) + "\nexport -p > " + strconv.Quote(s.state) + "\n"
}

func (s *session) run(b docBlock, prelude string) (string, error) {
	ctx, cancel := context.WithTimeout(s.t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", s.script(b, prelude))
	cmd.Dir = s.dir
	cmd.Env = s.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), &blockError{err: err, stderr: stderr.String()}
	}
	return stdout.String(), nil
}

type blockError struct {
	err    error
	stderr string
}

func (e *blockError) Error() string { return e.err.Error() + "\nstderr:\n" + e.stderr }

// check runs b and compares its output with the block under it; an "eventually" block is
// run again, for up to 20 seconds, until it matches.
func (s *session) check(b docBlock) {
	t := s.t
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got, err := s.run(b, "")
		require.NoError(t, err, "docs/quickstart.md line %d:\n%s\nstdout:\n%s", b.line, b.code, got)
		mismatch := outputMismatch(b.want, b.wantLang, got)
		if mismatch == "" {
			return
		}
		if b.directive != "eventually" || time.Now().After(deadline) {
			require.FailNow(t, "the output differs from the page's", "docs/quickstart.md line %d:\n%s\n%s\ngot:\n%s", b.line, b.code, mismatch, got)
		}
		select {
		case <-t.Context().Done():
			return
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// runWithMake runs b with make replaced by a function that records its arguments and the
// environment it would have run in.
func (s *session) runWithMake(b docBlock) (args []string, env []string) {
	t := s.t
	t.Helper()
	argsFile, envFile := filepath.Join(s.dir, ".test-make-args"), filepath.Join(s.dir, ".test-make-env")
	prelude := "make() { printf '%s\\0' \"$@\" > " + strconv.Quote(argsFile) + "; env -0 > " + strconv.Quote(envFile) + "; }\n"
	out, err := s.run(b, prelude)
	require.NoError(t, err, "docs/quickstart.md line %d:\n%s\nstdout:\n%s", b.line, b.code, out)
	a, err := os.ReadFile(argsFile)
	require.NoError(t, err, "docs/quickstart.md line %d: the block runs no make", b.line)
	e, err := os.ReadFile(envFile)
	require.NoError(t, err)
	require.NoError(t, os.Remove(argsFile))
	return nulSplit(a), nulSplit(e)
}

func nulSplit(b []byte) []string {
	return strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
}

// userEnv is what env adds to the test's own environment: what the page exported.
func userEnv(env []string) []string {
	own := os.Environ()
	var out []string
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "PWD", "OLDPWD", "SHLVL", "_":
			continue
		}
		if !slices.Contains(own, kv) {
			out = append(out, kv)
		}
	}
	return out
}

// restart restarts the provider worker and the router with components (the launcher's
// -components) and env on top of their usual environment, as `make up COMPONENTS=…`
// started from that shell would; the first restart (first) puts them back as they were
// when the test ends.
func restart(t *testing.T, components string, env []string, first bool) {
	t.Helper()
	names := []string{"provider-worker", "router"}
	start := func(extra []string) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), 2*time.Minute)
		defer cancel()
		for _, name := range names {
			require.NoError(t, st.StopService(ctx, name))
		}
		for _, name := range names {
			require.NoError(t, st.StartServiceWithEnv(ctx, name, append(st.ServiceEnv(name), extra...)))
			require.NoError(t, st.WaitReady(ctx, name, time.Minute))
		}
	}
	if first {
		t.Cleanup(func() { start(nil) })
	}
	start(append(slices.Clone(env), "COMPONENTS_DIR="+components))
}

// outputMismatch describes how got differs from want ("" when it matches): JSON by
// value, where a want string "..." matches any value and "abc..." any string starting
// "abc"; text line by line, runs of spaces as one, "..." matching anything within a line.
func outputMismatch(want, lang, got string) string {
	if lang == "" {
		return ""
	}
	if lang == "json" {
		var w, g any
		if err := json.Unmarshal([]byte(want), &w); err != nil {
			return "the page's JSON does not parse: " + err.Error()
		}
		if err := json.Unmarshal([]byte(got), &g); err != nil {
			return "the output is not JSON: " + err.Error()
		}
		return jsonMismatch("$", w, g)
	}
	wl, gl := lines(want), lines(got)
	if len(wl) != len(gl) {
		return "want " + strconv.Itoa(len(wl)) + " lines, got " + strconv.Itoa(len(gl))
	}
	for i := range wl {
		re := "^" + strings.ReplaceAll(regexp.QuoteMeta(wl[i]), `\.\.\.`, ".*") + "$"
		if !regexp.MustCompile(re).MatchString(gl[i]) {
			return "line " + strconv.Itoa(i+1) + ": want " + strconv.Quote(wl[i]) + ", got " + strconv.Quote(gl[i])
		}
	}
	return ""
}

func lines(s string) []string {
	var out []string
	for l := range strings.SplitSeq(strings.TrimRight(s, "\n"), "\n") {
		out = append(out, strings.Join(strings.Fields(l), " "))
	}
	return out
}

func jsonMismatch(path string, want, got any) string {
	if w, ok := want.(string); ok && strings.HasSuffix(w, "...") {
		if w == "..." {
			return ""
		}
		if g, ok := got.(string); ok && strings.HasPrefix(g, strings.TrimSuffix(w, "...")) {
			return ""
		}
		return path + ": want " + w + ", got " + jsonText(got)
	}
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return path + ": want an object, got " + jsonText(got)
		}
		for k := range g {
			if _, ok := w[k]; !ok {
				return path + "." + k + ": not on the page (" + jsonText(g[k]) + ")"
			}
		}
		for k, wv := range w {
			gv, ok := g[k]
			if !ok {
				return path + "." + k + ": missing"
			}
			if m := jsonMismatch(path+"."+k, wv, gv); m != "" {
				return m
			}
		}
		return ""
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return path + ": want " + strconv.Itoa(len(w)) + " elements, got " + jsonText(got)
		}
		for i := range w {
			if m := jsonMismatch(path+"["+strconv.Itoa(i)+"]", w[i], g[i]); m != "" {
				return m
			}
		}
		return ""
	default:
		if jsonText(want) != jsonText(got) {
			return path + ": want " + jsonText(want) + ", got " + jsonText(got)
		}
		return ""
	}
}

func jsonText(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
