package integration_test

import (
	"crypto/x509"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/parleyhq/parley/integration/stack"
)

// TestNATSLockedDown: the stack's NATS admits only its services' users, each within its
// permissions (libs/natsauth has a test per attack; this proves the stack runs with them).
func TestNATSLockedDown(t *testing.T) {
	need(t)
	t.Parallel()
	if ca := st.NATSCAFile(); ca != "" {
		// The stack's NATS serves TLS only (integration/stack's TestNATSServesTLSOnly
		// proves a plaintext client is dropped): nats.go upgrades and, without the
		// development CA, refuses the server's certificate.
		var unknown x509.UnknownAuthorityError
		if _, err := nats.Connect(st.NATSURL, nats.MaxReconnects(0)); !errors.As(err, &unknown) {
			t.Fatalf("connect without the development CA: %v, want the server's certificate refused", err)
		}
	}
	opts := []nats.Option{nats.MaxReconnects(0)}
	if ca := st.NATSCAFile(); ca != "" {
		opts = append(opts, nats.RootCAs(ca))
	}
	if _, err := nats.Connect(st.NATSURL, opts...); !errors.Is(err, nats.ErrAuthorization) {
		if err == nil {
			t.Skip("NATS_TEST_URL points at a server without Parley's users (see docs/security.md)")
		}
		t.Fatalf("connect without credentials: %v", err)
	}

	errs := make(chan error, 8)
	worker, err := st.ConnectNATS("provider-worker", nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		errs <- err
	}))
	require.NoError(t, err)
	t.Cleanup(worker.Close)

	// A worker's credentials call no provider directly, see no one else's prompts and
	// put nothing into the audit log.
	require.NoError(t, worker.PublishRequest("parley.provider.echo", worker.NewInbox(), []byte("direct call")))
	natsViolation(t, errs, "parley.provider.echo")
	_, err = worker.Subscribe("parley.provider.echo", func(*nats.Msg) {})
	require.NoError(t, err)
	natsViolation(t, errs, "parley.provider.echo")
	require.NoError(t, worker.Publish("parley.audit.conversation", []byte("forged")))
	natsViolation(t, errs, "parley.audit.conversation")

	// The admin user (tests, operators) has no limits.
	admin, err := st.ConnectNATS(stack.AdminUser)
	require.NoError(t, err)
	admin.Close()
}

func natsViolation(t *testing.T, errs <-chan error, subject string) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case err := <-errs:
			if strings.Contains(err.Error(), "Permissions Violation") && strings.Contains(err.Error(), `"`+subject+`"`) {
				return
			}
		case <-timeout:
			t.Fatalf("no permissions violation for %q", subject)
		}
	}
}
