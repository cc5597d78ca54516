package stack

import (
	"fmt"
	"path/filepath"

	"github.com/parleyhq/parley/libs/devca"
	"github.com/parleyhq/parley/libs/natsauth"
)

// PID is the process id of the running service (for reading its CPU time from /proc).
func (p *Process) PID() int { return p.cmd.Process.Pid }

// StartNATS starts the NATS server that Start embeds, on a free loopback port, for a
// caller that runs it in a process of its own and hands its URL to Start as NATSURL
// (parley-bench does, to measure NATS's CPU apart from the load generator's). stop shuts
// it down. It admits the stack's users and extra (StackUsers: seeds under
// dataDir/nats-auth, which a Start with the same DataDir, Env and NATSUsers finds), and
// stores under dataDir/nats.
func StartNATS(dataDir string, env map[string]string, extra ...natsauth.User) (url string, stop func(), err error) {
	users, err := StackUsers(dataDir, env, extra...)
	if err != nil {
		return "", nil, err
	}
	tlsDir := filepath.Join(dataDir, "tls")
	if _, err := devca.Ensure(tlsDir, defaultTrustDomain, []string{NATSIdentity}); err != nil {
		return "", nil, fmt.Errorf("development CA: %w", err)
	}
	n, err := startNATS(filepath.Join(dataDir, "nats"), users, devca.FilesOf(tlsDir, NATSIdentity), 1)
	if err != nil {
		return "", nil, err
	}
	return n.URL(), n.Stop, nil
}
