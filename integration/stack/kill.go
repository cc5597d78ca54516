package stack

import (
	"fmt"
	"syscall"
	"time"
)

// killWait bounds the wait for a process to be reaped after SIGKILL.
const killWait = 10 * time.Second

// Kill sends SIGKILL to service or instance name (its whole process group) and waits until
// the process has exited: a crash, with no graceful shutdown, no drain and no final reply.
// StartService restarts it; StopService and Stop skip it.
func (s *Stack) Kill(name string) error {
	p := s.Process(name)
	if p == nil {
		return fmt.Errorf("kill %s: not started", name)
	}
	select {
	case <-p.done:
		return fmt.Errorf("kill %s: already exited", name)
	default:
	}
	if err := syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill %s: %w", name, err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(killWait):
		return fmt.Errorf("kill %s: still running %s after SIGKILL", name, killWait)
	}
}
