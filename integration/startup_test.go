package integration_test

import (
	"os"
	"os/exec"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestBadStartup: a missing dependency or a bad setting fails start-up with exit status 1
// and a message that names the variable.
func TestBadStartup(t *testing.T) {
	need(t)
	t.Parallel()
	base := []string{"PATH=" + os.Getenv("PATH"), "RPC_ADDR=127.0.0.1:0", "NATS_CONNECT_TIMEOUT=1s"}
	tests := []struct {
		name    string
		service string
		env     []string
		want    string
	}{
		{"nats unreachable", "router", []string{"NATS_URL=nats://127.0.0.1:1", "COMPONENTS_DIR=testdata/components"}, "NATS_URL=nats://127.0.0.1:1"},
		{"no components dir", "router", append(st.NATSEnv("router"), "COMPONENTS_DIR=/nonexistent"), "COMPONENTS_DIR=/nonexistent"},
		{"bad number", "router", append(st.NATSEnv("router"), "COMPONENTS_DIR=testdata/components", "ROUTER_DISPATCH_ATTEMPTS=0"), "ROUTER_DISPATCH_ATTEMPTS must be positive"},
		{"nats credentials missing", "router", []string{"NATS_URL=" + st.NATSURL, "NATS_NKEY_SEED_FILE=/nonexistent.nk", "COMPONENTS_DIR=testdata/components"}, "NATS_NKEY_SEED_FILE=/nonexistent.nk"},
		{"bad duration", "pii-scrubber", []string{"RPC_READ_HEADER_TIMEOUT=soon"}, "RPC_READ_HEADER_TIMEOUT"},
		{"database missing", "audit", st.NATSEnv("audit"), "DATABASE_URL"},
		{"database unreachable", "audit", append(st.NATSEnv("audit"), "DATABASE_URL=postgres://postgres@127.0.0.1:1/x?connect_timeout=1"), "DATABASE_URL"},
		{"port taken", "cache", append(st.NATSEnv("cache"), "RPC_ADDR="+st.URL("router")[len("http://"):]), "RPC_ADDR"},
		{"no certificate", "cache", append(st.NATSEnv("cache"), "TLS_CERT_FILE=/nonexistent/tls.crt"), "TLS_CERT_FILE"},
		{"certificate of another service", "audit", append(st.NATSEnv("audit"), "TLS_CERT_FILE="+st.Files("cache").Cert, "TLS_KEY_FILE="+st.Files("cache").Key),
			"names spiffe://parley.local/cache, but this service is spiffe://parley.local/audit"},
		{"plaintext URL under mutual TLS", "router", append(st.NATSEnv("router"), "COMPONENTS_DIR=testdata/components", "ROUTER_CACHE_URL=http://127.0.0.1:3520"),
			"ROUTER_CACHE_URL must be a https:// URL while INTERNAL_TLS=on"},
		{"cleartext gRPC port under mutual TLS", "cache", append(st.NATSEnv("cache"), "RPC_GRPC_ADDRS=127.0.0.1:0"), "RPC_GRPC_ADDRS serve cleartext gRPC"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cmd := exec.CommandContext(t.Context(), st.Binary(tt.service)) //nolint:gosec // our own binary
			// The service's own certificate; a case's env may replace it.
			f := st.Files(tt.service)
			identity := []string{"TLS_CA_FILE=" + f.CA, "TLS_CERT_FILE=" + f.Cert, "TLS_KEY_FILE=" + f.Key, "TLS_TRUST_DOMAIN=" + st.TrustDomain()}
			cmd.Env = append(append(append([]string{}, base...), identity...), tt.env...)
			if tt.service == "router" {
				cmd.Env = append(cmd.Env, "RPC_GRPC_ADDRS=127.0.0.1:0") // not Dapr's 50001, which make up may hold
			}
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			require.ErrorAs(t, err, &ee, "%s must not start:\n%s", tt.service, out)
			require.Equal(t, 1, ee.ExitCode(), string(out))
			require.Contains(t, string(out), tt.want)
		})
	}
}
