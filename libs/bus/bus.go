// Package bus owns the NATS connection and its JetStream context.
package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/fx"

	"github.com/parleyhq/parley/libs/logging"
	"github.com/parleyhq/parley/libs/rpcserver"
)

// Config locates the NATS server and says who this service is to it.
type Config struct {
	// URL is one or more comma-separated NATS URLs.
	URL string `env:"NATS_URL, default=nats://127.0.0.1:4222"`
	// ConnectTimeout bounds the first connection at start-up.
	ConnectTimeout time.Duration `env:"NATS_CONNECT_TIMEOUT, default=5s"`
	// NKeySeedFile holds the service's NATS user nkey seed (a mounted secret). With it
	// the connection authenticates as that user and its inboxes live under
	// InboxPrefix(public key), the only inbox subjects the user may subscribe to.
	NKeySeedFile string `env:"NATS_NKEY_SEED_FILE"`
	// TLSCAFile holds the CA certificates the NATS server's certificate must chain to;
	// setting it turns TLS on.
	TLSCAFile string `env:"NATS_TLS_CA_FILE"`
	// TLSCertFile and TLSKeyFile hold a client certificate and key, for servers that
	// verify clients (both or neither).
	TLSCertFile string `env:"NATS_TLS_CERT_FILE"`
	TLSKeyFile  string `env:"NATS_TLS_KEY_FILE"`
}

// MaxPayload is the NATS max_payload Parley's own servers run with: the embedded server
// of `make up`, the test servers (natstest) and deploy/'s NATS. NATS's default of 1 MiB
// is too small: the largest message is an audit event, the request (up to
// ROUTER_MAX_BODY_BYTES, 4 MiB, as JSON) plus the answer plus metadata, and the router
// refuses a request whose audit copy takes more than half of the connected server's
// max_payload. NATS warns above 8 MiB and refuses above 64 MiB.
const MaxPayload = 16 << 20

// Conn is a NATS connection that knows when it has closed.
type Conn struct {
	*nats.Conn
	closed chan struct{}
}

// Connect dials NATS, failing at once when the server cannot be reached; after that the
// connection reconnects forever.
func Connect(cfg Config, name string, logger *slog.Logger) (*Conn, error) {
	c := &Conn{closed: make(chan struct{})}
	security, err := cfg.securityOptions()
	if err != nil {
		return nil, err
	}
	if cfg.NKeySeedFile == "" {
		logger.Warn("NATS_NKEY_SEED_FILE is unset: connecting to NATS without credentials; a server that admits such clients lets anyone read prompts (docs/security.md)")
	}
	opts := append(security,
		nats.Name(name),
		nats.Timeout(cfg.ConnectTimeout),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				logger.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { logger.Info("nats reconnected", "url", nc.ConnectedUrlRedacted()) }),
		nats.ClosedHandler(func(*nats.Conn) { close(c.closed) }),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			logger.Error("nats async error", "subject", subject, "err", err)
		}),
	)
	nc, err := nats.Connect(cfg.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at NATS_URL=%s: %w", cfg.URL, err)
	}
	c.Conn = nc
	return c, nil
}

// Drain drains subscriptions and publishes, then closes, waiting until closed or ctx ends.
func (c *Conn) Drain(ctx context.Context) error {
	if err := c.Conn.Drain(); err != nil {
		if errors.Is(err, nats.ErrConnectionClosed) {
			return nil
		}
		// While NATS is unreachable there is nothing to drain to: close instead of failing
		// the whole shutdown.
		if errors.Is(err, nats.ErrConnectionReconnecting) {
			c.Close()
			return nil
		}
		return fmt.Errorf("drain nats: %w", err)
	}
	select {
	case <-c.closed:
		return nil
	case <-ctx.Done():
		c.Close()
		return fmt.Errorf("drain nats: %w", ctx.Err())
	}
}

// Ready reports whether the connection is up.
func (c *Conn) Ready(context.Context) error {
	if s := c.Status(); s != nats.CONNECTED {
		return fmt.Errorf("nats %s", s)
	}
	return nil
}

// Module provides *Conn, jetstream.JetStream and a readiness check; the connection drains
// on stop, after everything that uses it has stopped.
var Module = fx.Module("bus",
	fx.Provide(
		func(lc fx.Lifecycle, cfg Config, name logging.ServiceName, logger *slog.Logger) (*Conn, error) {
			c, err := Connect(cfg, "parley-"+string(name), logger)
			if err != nil {
				return nil, err
			}
			lc.Append(fx.StopHook(c.Drain))
			return c, nil
		},
		func(c *Conn) (jetstream.JetStream, error) { return jetstream.New(c.Conn) },
		rpcserver.AsCheck(func(c *Conn) rpcserver.Check { return rpcserver.Check{Name: "nats", Check: c.Ready} }),
	),
)
