package deploy_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// This file builds each service's production Dockerfile without Docker: it recreates
// the build context the Dockerfile documents, copies into a stand-in for the build
// stage's file system only what the Dockerfile's COPY lines copy, and runs the stage's
// go commands there, offline, against the local module cache. A Dockerfile whose
// module reaches outside what it copies (a replace to a folder left behind) fails
// here as it would in `docker build`.

// repoRoot is the repository root, relative to this package.
const repoRoot = ".."

// instruction is one Dockerfile instruction.
type instruction struct {
	// line is the 1-based line where the instruction starts.
	line int
	// cmd is the upper-case keyword (FROM, COPY, RUN, ...).
	cmd string
	// flags are the --name=value options before the arguments.
	flags map[string]string
	// args are the arguments: the JSON array, or the shell form split on white space.
	args []string
	// raw is the shell form's argument text after the flags ("" in JSON form).
	raw string
	// json is set when the arguments are a JSON array.
	json bool
}

// stage is one FROM and the instructions up to the next.
type stage struct {
	// base is the image the stage starts from.
	base string
	// name is the AS name, or the stage's index as Docker numbers it.
	name   string
	instrs []instruction
}

// dockerfile is a parsed Dockerfile.
type dockerfile struct {
	stages []*stage
	// comments are the text of the comment lines, without '#'.
	comments []string
}

// parseDockerfile reads the instructions of a Dockerfile: comments, line
// continuations, --flags, the JSON and the shell forms. It understands no heredocs
// and no escape directive; it fails on what it cannot read.
func parseDockerfile(text string) (*dockerfile, error) {
	df := &dockerfile{}
	var pending strings.Builder
	start := 0
	for i, line := range strings.Split(text, "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") {
			df.comments = append(df.comments, strings.TrimPrefix(trimmed, "#"))
			continue
		}
		if trimmed == "" && pending.Len() == 0 {
			continue
		}
		if pending.Len() == 0 {
			start = i + 1
		}
		if body, ok := strings.CutSuffix(trimmed, `\`); ok {
			pending.WriteString(body + " ")
			continue
		}
		pending.WriteString(trimmed)
		in, err := parseInstruction(start, pending.String())
		if err != nil {
			return nil, err
		}
		pending.Reset()
		if in.cmd == "FROM" {
			st := &stage{name: strconv.Itoa(len(df.stages))}
			switch {
			case len(in.args) == 1:
			case len(in.args) == 3 && strings.EqualFold(in.args[1], "AS"):
				st.name = in.args[2]
			default:
				return nil, fmt.Errorf("line %d: FROM %s: want an image and an optional AS name", in.line, in.raw)
			}
			st.base = in.args[0]
			df.stages = append(df.stages, st)
			continue
		}
		if len(df.stages) == 0 {
			if in.cmd == "ARG" {
				continue
			}
			return nil, fmt.Errorf("line %d: %s before the first FROM", in.line, in.cmd)
		}
		last := df.stages[len(df.stages)-1]
		last.instrs = append(last.instrs, in)
	}
	if pending.Len() > 0 {
		return nil, errors.New("the last instruction ends with a line continuation")
	}
	if len(df.stages) == 0 {
		return nil, errors.New("no FROM")
	}
	return df, nil
}

// parseInstruction splits one logical line into keyword, flags and arguments.
func parseInstruction(line int, text string) (instruction, error) {
	keyword, rest, _ := strings.Cut(text, " ")
	in := instruction{line: line, cmd: strings.ToUpper(keyword), flags: make(map[string]string)}
	rest = strings.TrimSpace(rest)
	for strings.HasPrefix(rest, "--") {
		flag, after, _ := strings.Cut(rest, " ")
		name, value, _ := strings.Cut(strings.TrimPrefix(flag, "--"), "=")
		in.flags[name] = value
		rest = strings.TrimSpace(after)
	}
	if strings.HasPrefix(rest, "[") {
		if err := json.Unmarshal([]byte(rest), &in.args); err != nil {
			return in, fmt.Errorf("line %d: %s: JSON form: %w", line, in.cmd, err)
		}
		in.json = true
		return in, nil
	}
	in.raw = rest
	in.args = strings.Fields(rest)
	return in, nil
}

// stageNamed returns the stage called name, or nil.
func (df *dockerfile) stageNamed(name string) *stage {
	for _, st := range df.stages {
		if st.name == name {
			return st
		}
	}
	return nil
}

// buildCommand returns the -f file and the context of the `docker build` command that
// the Dockerfile's comments document, both relative to the directory it is run from.
func (df *dockerfile) buildCommand() (file, context string, err error) {
	var found []string
	for _, c := range df.comments {
		words := strings.Fields(c)
		for i := 0; i+1 < len(words); i++ {
			if words[i] == "docker" && words[i+1] == "build" {
				found = append(found, strings.Join(words[i+2:], " "))
			}
		}
	}
	if len(found) != 1 {
		return "", "", fmt.Errorf("want one documented `docker build` command in the comments, found %d", len(found))
	}
	words := strings.Fields(found[0])
	var positional []string
	for i := 0; i < len(words); i++ {
		switch w := words[i]; {
		case (w == "-f" || w == "--file" || w == "-t" || w == "--tag") && i+1 < len(words):
			if w == "-f" || w == "--file" {
				file = words[i+1]
			}
			i++
		case strings.HasPrefix(w, "-"):
			return "", "", fmt.Errorf("docker build %s: option %s is not understood here", found[0], w)
		default:
			positional = append(positional, w)
		}
	}
	if file == "" || len(positional) != 1 {
		return "", "", fmt.Errorf("docker build %s: want -f <Dockerfile> and one context", found[0])
	}
	return file, positional[0], nil
}

// stageRun is a build stage being carried out on the host: root stands for the
// container's "/".
type stageRun struct {
	// contextDir is the build context on the host.
	contextDir string
	root       string
	workdir    string
	// env is the stage's environment after the base environment of goEnv.
	env []string
}

// host maps a container path (absolute, or relative to the working directory) to
// the host.
func (s *stageRun) host(p string) string {
	if !path.IsAbs(p) {
		p = path.Join(s.workdir, p)
	}
	return filepath.Join(s.root, filepath.FromSlash(path.Clean(p)))
}

// goEnv is the environment the stage's go commands start from: the test's own
// (GOCACHE and the module cache are shared, so rebuilding is cheap), offline and
// with the go.mod checks a `docker build` applies; the Dockerfile's ENV and the
// command's own assignments come after and win.
func goEnv() []string {
	return append(os.Environ(),
		"GOWORK=off",
		"GOPROXY=off",
		"GOFLAGS=-mod=readonly",
		"GOTOOLCHAIN=local",
	)
}

// buildStage carries out st's WORKDIR, ENV, ARG, COPY and RUN instructions under
// root, copying from contextDir, and returns the first failure. It supports the
// subset of Docker the service Dockerfiles use and fails on the rest.
func buildStage(ctx context.Context, st *stage, contextDir, root string) error {
	if _, err := os.Stat(filepath.Join(contextDir, ".dockerignore")); err == nil {
		return errors.New(".dockerignore would change what COPY copies: teach buildStage about it")
	}
	s := &stageRun{contextDir: contextDir, root: root, workdir: "/", env: goEnv()}
	for _, in := range st.instrs {
		var err error
		switch in.cmd {
		case "WORKDIR":
			if len(in.args) != 1 {
				return fmt.Errorf("line %d: WORKDIR takes one path", in.line)
			}
			s.workdir = path.Join(s.workdir, in.args[0])
			if path.IsAbs(in.args[0]) {
				s.workdir = path.Clean(in.args[0])
			}
			err = os.MkdirAll(s.host(s.workdir), 0o755)
		case "ENV", "ARG":
			for _, a := range in.args {
				if strings.Contains(a, "=") {
					s.env = append(s.env, a)
				} else if in.cmd == "ENV" {
					return fmt.Errorf("line %d: ENV %s: use the NAME=value form", in.line, in.raw)
				}
			}
		case "COPY":
			err = s.copy(in)
		case "RUN":
			err = s.run(ctx, in)
		case "LABEL", "EXPOSE", "USER", "ENTRYPOINT", "CMD":
			// They shape the image, not what the build produces.
		default:
			err = fmt.Errorf("line %d: %s in a build stage is not supported here", in.line, in.cmd)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// copy carries out a COPY from the build context: a folder's contents go into the
// destination; a file goes to the destination, or into it when it ends in "/" or
// several sources are copied.
func (s *stageRun) copy(in instruction) error {
	if in.json || len(in.args) < 2 {
		return fmt.Errorf("line %d: COPY: want the shell form with sources and a destination", in.line)
	}
	if _, ok := in.flags["from"]; ok {
		return fmt.Errorf("line %d: COPY --from in a build stage is not supported here", in.line)
	}
	srcs, dst := in.args[:len(in.args)-1], in.args[len(in.args)-1]
	target := s.host(dst)
	intoDir := strings.HasSuffix(dst, "/") || len(srcs) > 1
	for _, src := range srcs {
		// Sources cannot leave the context: Docker resolves them under its root.
		matches, err := filepath.Glob(filepath.Join(s.contextDir, filepath.FromSlash(path.Clean("/"+src))))
		if err != nil {
			return fmt.Errorf("line %d: COPY %s: %w", in.line, src, err)
		}
		if len(matches) == 0 {
			return fmt.Errorf("line %d: COPY %s: not in the build context %s", in.line, src, s.contextDir)
		}
		for _, m := range matches {
			info, err := os.Stat(m)
			if err != nil {
				return err
			}
			if info.IsDir() {
				if err := os.CopyFS(target, os.DirFS(m)); err != nil {
					return fmt.Errorf("line %d: COPY %s: %w", in.line, src, err)
				}
				continue
			}
			to := target
			if intoDir || len(matches) > 1 {
				to = filepath.Join(target, filepath.Base(m))
			}
			if err := copyFile(m, to, info.Mode()); err != nil {
				return fmt.Errorf("line %d: COPY %s: %w", in.line, src, err)
			}
		}
	}
	return nil
}

// copyFile copies the regular file from to to, creating to's folder.
func copyFile(from, to string, mode os.FileMode) error {
	data, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		return err
	}
	return os.WriteFile(to, data, mode.Perm())
}

// run carries out a RUN of `cd <dir>` and `[NAME=value ...] go ...` commands joined
// by &&; absolute paths in a go command's arguments are mapped under root. Any other
// shell syntax fails: the test would not know what it does.
func (s *stageRun) run(ctx context.Context, in instruction) error {
	if in.json {
		return fmt.Errorf("line %d: RUN in JSON form is not supported here", in.line)
	}
	if strings.ContainsAny(strings.ReplaceAll(in.raw, "&&", ""), "&;|<>$`'\"(){}\\") {
		return fmt.Errorf("line %d: RUN %s: shell syntax beyond `cd` and `&&` is not supported here", in.line, in.raw)
	}
	cwd := s.workdir
	for part := range strings.SplitSeq(in.raw, "&&") {
		words := strings.Fields(part)
		if len(words) == 2 && words[0] == "cd" {
			cwd = path.Join(cwd, words[1])
			if path.IsAbs(words[1]) {
				cwd = path.Clean(words[1])
			}
			continue
		}
		env := slices.Clone(s.env)
		for len(words) > 0 && strings.Contains(words[0], "=") && !strings.HasPrefix(words[0], "-") {
			env = append(env, words[0])
			words = words[1:]
		}
		if len(words) == 0 || words[0] != "go" {
			return fmt.Errorf("line %d: RUN %s: only cd and go commands are supported here", in.line, strings.TrimSpace(part))
		}
		args := make([]string, 0, len(words)-1)
		for _, a := range words[1:] {
			args = append(args, s.mapArg(a))
		}
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir = s.host(cwd)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("line %d: RUN %s (in %s): %w\n%s", in.line, strings.TrimSpace(part), cwd, err, out)
		}
	}
	return nil
}

// mapArg maps an absolute container path, alone or as a -flag=value, under root.
func (s *stageRun) mapArg(a string) string {
	if strings.HasPrefix(a, "/") {
		return s.host(a)
	}
	if name, value, ok := strings.Cut(a, "="); ok && strings.HasPrefix(name, "-") && strings.HasPrefix(value, "/") {
		return name + "=" + s.host(value)
	}
	return a
}

// runtimeImage is what the last stage of a service's Dockerfile runs.
type runtimeImage struct {
	base       string
	user       string
	exposed    []string
	entrypoint []string
	// copied maps each destination of a COPY --from to its stage and source path.
	copied map[string][2]string
}

// readRuntimeImage collects the last stage's base, USER, EXPOSE, ENTRYPOINT and
// COPY --from lines.
func readRuntimeImage(df *dockerfile) (runtimeImage, error) {
	last := df.stages[len(df.stages)-1]
	img := runtimeImage{base: last.base, copied: make(map[string][2]string)}
	for _, in := range last.instrs {
		switch in.cmd {
		case "USER":
			img.user = strings.Join(in.args, " ")
		case "EXPOSE":
			img.exposed = append(img.exposed, in.args...)
		case "ENTRYPOINT":
			if !in.json {
				return img, fmt.Errorf("line %d: ENTRYPOINT: use the JSON form (no shell on distroless)", in.line)
			}
			img.entrypoint = in.args
		case "COPY":
			from, ok := in.flags["from"]
			if !ok || len(in.args) != 2 {
				return img, fmt.Errorf("line %d: the runtime stage copies one file from the build stage, not %s", in.line, in.raw)
			}
			img.copied[in.args[1]] = [2]string{from, in.args[0]}
		}
	}
	return img, nil
}

// buildDockerfile parses the Dockerfile at path (relative to the repository
// root), carries out the stage that the runtime stage copies its entrypoint from,
// and returns the runtime image and the host path of the entrypoint binary built.
func buildDockerfile(ctx context.Context, repo, dockerfilePath, scratch string) (runtimeImage, string, error) {
	data, err := os.ReadFile(filepath.Join(repo, dockerfilePath))
	if err != nil {
		return runtimeImage{}, "", err
	}
	df, err := parseDockerfile(string(data))
	if err != nil {
		return runtimeImage{}, "", fmt.Errorf("%s: %w", dockerfilePath, err)
	}
	file, contextArg, err := df.buildCommand()
	if err != nil {
		return runtimeImage{}, "", fmt.Errorf("%s: %w", dockerfilePath, err)
	}
	if filepath.Clean(file) != filepath.Clean(dockerfilePath) {
		return runtimeImage{}, "", fmt.Errorf("%s documents `docker build -f %s`, another file", dockerfilePath, file)
	}
	img, err := readRuntimeImage(df)
	if err != nil {
		return img, "", fmt.Errorf("%s: %w", dockerfilePath, err)
	}
	if len(img.entrypoint) == 0 {
		return img, "", fmt.Errorf("%s: no ENTRYPOINT", dockerfilePath)
	}
	src, ok := img.copied[img.entrypoint[0]]
	if !ok {
		return img, "", fmt.Errorf("%s: no COPY --from puts the entrypoint %s into the image", dockerfilePath, img.entrypoint[0])
	}
	build := df.stageNamed(src[0])
	if build == nil || build == df.stages[len(df.stages)-1] {
		return img, "", fmt.Errorf("%s: COPY --from=%s names no earlier stage", dockerfilePath, src[0])
	}
	root := filepath.Join(scratch, "stage-"+build.name)
	if err := buildStage(ctx, build, filepath.Join(repo, contextArg), root); err != nil {
		return img, "", fmt.Errorf("%s, context %s: %w", dockerfilePath, contextArg, err)
	}
	binary := filepath.Join(root, filepath.FromSlash(path.Clean("/"+src[1])))
	info, err := os.Stat(binary)
	if err != nil {
		return img, "", fmt.Errorf("%s: the build stage did not produce %s: %w", dockerfilePath, src[1], err)
	}
	if !info.Mode().IsRegular() || info.Mode().Perm()&0o111 == 0 {
		return img, "", fmt.Errorf("%s: %s is not an executable file", dockerfilePath, src[1])
	}
	return img, binary, nil
}

// TestDockerfiles builds each service's production Dockerfile without Docker: only
// the folders it copies, from the context it documents, offline (GOPROXY=off) with
// GOWORK=off. The runtime stage must run that binary as non-root on distroless and
// expose the service's ports.
func TestDockerfiles(t *testing.T) {
	if testing.Short() {
		t.Skip("builds every service: skipped under -short")
	}
	t.Parallel()
	specs := serviceSpecs()
	for _, name := range repoServices(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			// The build below is offline: fill the module cache from the service's own
			// go.sum first (a no-op when it is filled).
			download := exec.CommandContext(t.Context(), "go", "mod", "download")
			download.Dir = filepath.Join(repoRoot, "services", name)
			download.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly")
			out, err := download.CombinedOutput()
			require.NoError(t, err, "go mod download in services/%s:\n%s", name, out)

			img, binary, err := buildDockerfile(t.Context(), repoRoot, filepath.Join("services", name, "Dockerfile"), t.TempDir())
			require.NoError(t, err)
			require.Equal(t, "/usr/local/bin/"+name, img.entrypoint[0], "ENTRYPOINT")
			require.FileExists(t, binary)

			require.True(t, strings.HasPrefix(img.base, "gcr.io/distroless/static"), "runtime image %s", img.base)
			user, _, _ := strings.Cut(img.user, ":")
			require.Equal(t, "nonroot", user, "USER")
			var want []string
			for _, p := range specs[name].ports {
				want = append(want, strconv.Itoa(int(p)))
			}
			require.Equal(t, want, img.exposed, "EXPOSE")
		})
	}
}

// TestBuildDockerfileFollowsTheContext builds small stdlib-only modules to show that
// buildDockerfile sees only what a Dockerfile copies, from the context it documents.
func TestBuildDockerfileFollowsTheContext(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		dockerfile string
		want       string // "" when the build must succeed
	}{
		{
			name: "copies the module and the folder it replaces",
			dockerfile: `# docker build -f app/Dockerfile .
FROM golang AS build
WORKDIR /src
COPY lib/ lib/
COPY app/ app/
RUN --mount=type=cache,target=/root/.cache/go-build \
    cd app && GOWORK=off CGO_ENABLED=0 go build -o /out/app ./cmd/app
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/app /usr/local/bin/app
ENTRYPOINT ["/usr/local/bin/app"]
`,
		},
		{
			name: "leaves the replaced folder out",
			dockerfile: `# docker build -f app/Dockerfile .
FROM golang AS build
WORKDIR /src
COPY app/ app/
RUN cd app && go build -o /out/app ./cmd/app
FROM scratch
COPY --from=build /out/app /usr/local/bin/app
ENTRYPOINT ["/usr/local/bin/app"]
`,
			want: "replacement directory ../lib does not exist",
		},
		{
			name: "context is the app folder",
			dockerfile: `# docker build -f app/Dockerfile app
FROM golang AS build
WORKDIR /src
COPY lib/ lib/
COPY . app/
RUN cd app && go build -o /out/app ./cmd/app
FROM scratch
COPY --from=build /out/app /usr/local/bin/app
ENTRYPOINT ["/usr/local/bin/app"]
`,
			want: "COPY lib/: not in the build context",
		},
		{
			name: "a single file copied",
			dockerfile: `# docker build -f app/Dockerfile .
FROM golang AS build
WORKDIR /src
COPY app/go.mod app/
RUN cd app && go build -o /out/app ./cmd/app
FROM scratch
COPY --from=build /out/app /usr/local/bin/app
ENTRYPOINT ["/usr/local/bin/app"]
`,
			want: "cmd/app: directory not found",
		},
		{
			name: "the entrypoint is not what the build produced",
			dockerfile: `# docker build -f app/Dockerfile .
FROM golang AS build
WORKDIR /src
COPY lib/ lib/
COPY app/ app/
RUN cd app && go build -o /out/app ./cmd/app
FROM scratch
COPY --from=build /out/other /usr/local/bin/app
ENTRYPOINT ["/usr/local/bin/app"]
`,
			want: "did not produce /out/other",
		},
		{
			name: "shell beyond cd and go",
			dockerfile: `# docker build -f app/Dockerfile .
FROM golang AS build
COPY app/ app/
RUN cd app && go build -o /out/app ./cmd/app || true
FROM scratch
COPY --from=build /out/app /app
ENTRYPOINT ["/app"]
`,
			want: "shell syntax beyond",
		},
		{
			name: "no documented build command",
			dockerfile: `FROM golang AS build
FROM scratch
COPY --from=build /out/app /app
ENTRYPOINT ["/app"]
`,
			want: "want one documented `docker build` command",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			repo := t.TempDir()
			for file, content := range map[string]string{
				"lib/go.mod":          "module example.com/lib\n\ngo 1.24\n",
				"lib/lib.go":          "package lib\n\n// Answer is what app prints.\nconst Answer = 42\n",
				"app/go.mod":          "module example.com/app\n\ngo 1.24\n\nrequire example.com/lib v0.0.0\n\nreplace example.com/lib => ../lib\n",
				"app/cmd/app/main.go": "package main\n\nimport \"example.com/lib\"\n\nfunc main() { println(lib.Answer) }\n",
				"app/Dockerfile":      tt.dockerfile,
			} {
				require.NoError(t, os.MkdirAll(filepath.Join(repo, filepath.Dir(file)), 0o755))
				require.NoError(t, os.WriteFile(filepath.Join(repo, file), []byte(content), 0o644))
			}
			_, binary, err := buildDockerfile(t.Context(), repo, "app/Dockerfile", t.TempDir())
			if tt.want != "" {
				require.ErrorContains(t, err, tt.want)
				return
			}
			require.NoError(t, err)
			out, err := exec.CommandContext(t.Context(), binary).CombinedOutput()
			require.NoError(t, err, "%s", out)
			require.Equal(t, "42\n", string(out))
		})
	}
}
