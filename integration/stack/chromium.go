package stack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
)

// ErrNoChromium reports that no Chromium is installed and none could be: the caller is not
// root, or the machine has no apt-get.
var ErrNoChromium = errors.New("chromium is needed for the browser tests (install the chromium package)")

// chromiumNames are the executables Debian's chromium and other distributions install.
var chromiumNames = []string{"chromium", "chromium-browser", "google-chrome-stable", "google-chrome"}

// FindChromium returns the path of a Chromium for headless browser tests. When none is
// installed and install is set, it installs Debian's chromium package with apt-get as the
// launcher installs PostgreSQL: only as root, only where apt-get exists. CHROMIUM_PATH
// names one explicitly.
func FindChromium(ctx context.Context, install bool, progress io.Writer) (string, error) {
	if p := os.Getenv("CHROMIUM_PATH"); p != "" {
		if !isExec(p) {
			return "", fmt.Errorf("CHROMIUM_PATH=%s is not an executable", p)
		}
		return p, nil
	}
	if p, ok := lookChromium(); ok {
		return p, nil
	}
	if !install || os.Geteuid() != 0 {
		return "", fmt.Errorf("%w: none of %s found", ErrNoChromium, strings.Join(chromiumNames, ", "))
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		return "", fmt.Errorf("%w: not found, and no apt-get to install it", ErrNoChromium)
	}
	_, _ = fmt.Fprintln(progress, "chromium not found: apt-get install -y chromium ...")
	if err := aptInstallPackages(ctx, "chromium"); err != nil {
		return "", err
	}
	if p, ok := lookChromium(); ok {
		return p, nil
	}
	return "", fmt.Errorf("%w: apt-get installed chromium, yet it is not on PATH", ErrNoChromium)
}

func lookChromium() (string, bool) {
	for _, n := range chromiumNames {
		if p, err := exec.LookPath(n); err == nil {
			return p, true
		}
	}
	return "", false
}
