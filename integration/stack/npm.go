package stack

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
)

// ErrNoNode reports that node or npm is not installed.
var ErrNoNode = errors.New("node and npm are needed (install the nodejs and npm packages)")

// npmStamp, in the install folder, holds the hash of the package-lock.json installed there.
const npmStamp = ".parley-lock-sha256"

// NodeProject installs a committed Node project (package.json, package-lock.json and its
// scripts, every regular file of project) into dir with `npm ci`, as the launcher installs
// PostgreSQL when it is missing: once, and again only when the lock file changes, so repeated
// runs are fast. node_modules lives under dir (under .data, ignored by git), never in the
// repository. It returns dir, ready for `node <script>`, or ErrNoNode.
func NodeProject(ctx context.Context, project, dir string, progress io.Writer) (string, error) {
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			return "", fmt.Errorf("%w: %s not found", ErrNoNode, tool)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create %s: %w", dir, err)
	}
	// Another test process may install into the same folder: one at a time.
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", fmt.Errorf("lock %s: %w", dir, err)
	}
	defer func() { _ = lock.Close() }()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("lock %s: %w", dir, err)
	}
	defer func() { _ = syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) }()

	entries, err := os.ReadDir(project)
	if err != nil {
		return "", fmt.Errorf("read node project: %w", err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(project, e.Name()))
		if err != nil {
			return "", fmt.Errorf("read node project: %w", err)
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), b, 0o644); err != nil {
			return "", fmt.Errorf("copy node project: %w", err)
		}
	}
	lockFile, err := os.ReadFile(filepath.Join(project, "package-lock.json"))
	if err != nil {
		return "", fmt.Errorf("node project without package-lock.json: %w", err)
	}
	sum := sha256.Sum256(lockFile)
	want := []byte(hex.EncodeToString(sum[:]))
	if got, err := os.ReadFile(filepath.Join(dir, npmStamp)); err == nil && bytes.Equal(got, want) {
		if _, err := os.Stat(filepath.Join(dir, "node_modules")); err == nil {
			return dir, nil
		}
	}
	_, _ = fmt.Fprintf(progress, "installing %s with npm ci into %s ...\n", filepath.Base(project), dir)
	// --ignore-scripts: nothing the project needs builds at install time, and nothing
	// fetched runs on this machine.
	_ = os.Remove(filepath.Join(dir, npmStamp))
	cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("npm ci in %s: %w\n%s", dir, err, out)
	}
	if err := os.WriteFile(filepath.Join(dir, npmStamp), want, 0o644); err != nil {
		return "", fmt.Errorf("write %s: %w", npmStamp, err)
	}
	return dir, nil
}
