package stack

// PID is the process id of the running service (for reading its CPU time from /proc).
func (p *Process) PID() int { return p.cmd.Process.Pid }

// StartNATS starts the NATS server that Start embeds, on a free loopback port, for a
// caller that runs it in a process of its own and hands its URL to Start as NATSURL
// (parley-bench does, to measure NATS's CPU apart from the load generator's). stop shuts
// it down.
func StartNATS(storeDir string) (url string, stop func(), err error) {
	n, err := startNATS(storeDir)
	if err != nil {
		return "", nil, err
	}
	return n.URL(), n.Stop, nil
}
