// Package app wires the router.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"

	"github.com/parleyhq/parley/gen/pb/dapr/proto/runtime/v1/runtimev1connect"
	"github.com/parleyhq/parley/gen/pb/parley/audit/v1/auditv1connect"
	"github.com/parleyhq/parley/gen/pb/parley/cache/v1/cachev1connect"
	"github.com/parleyhq/parley/gen/pb/parley/component/v1/componentv1connect"
	"github.com/parleyhq/parley/gen/pb/parley/conversation/v1/conversationv1connect"
	"github.com/parleyhq/parley/gen/pb/parley/pii/v1/piiv1connect"
	"github.com/parleyhq/parley/libs/auditevent"
	"github.com/parleyhq/parley/libs/bus"
	"github.com/parleyhq/parley/libs/config"
	"github.com/parleyhq/parley/libs/identity"
	"github.com/parleyhq/parley/libs/platform"
	"github.com/parleyhq/parley/libs/rpcclient"
	"github.com/parleyhq/parley/libs/rpcserver"
	"github.com/parleyhq/parley/libs/seal"
	"github.com/parleyhq/parley/libs/telemetry"
	"github.com/parleyhq/parley/services/router/internal/apikey"
	"github.com/parleyhq/parley/services/router/internal/apitoken"
	"github.com/parleyhq/parley/services/router/internal/auditapi"
	"github.com/parleyhq/parley/services/router/internal/componentapi"
	"github.com/parleyhq/parley/services/router/internal/console"
	"github.com/parleyhq/parley/services/router/internal/conversation"
	"github.com/parleyhq/parley/services/router/internal/daprapi"
	"github.com/parleyhq/parley/services/router/internal/nativeapi"
	"github.com/parleyhq/parley/services/router/internal/nearcache"
	"github.com/parleyhq/parley/services/router/internal/openaiapi"
	"github.com/parleyhq/parley/services/router/internal/presence"
	"github.com/parleyhq/parley/services/router/internal/ratelimit"
	"github.com/parleyhq/parley/services/router/internal/upstream"
)

// Config is the router's own configuration.
type Config struct {
	// ComponentsDir holds the Dapr component YAML files.
	ComponentsDir string `env:"COMPONENTS_DIR, default=/etc/parley/components"`
	// ScrubberURL, CacheURL and AuditURL locate the internal services: https:// under
	// mutual TLS (INTERNAL_TLS=on, the default), http:// with INTERNAL_TLS=off.
	ScrubberURL string `env:"ROUTER_SCRUBBER_URL, default=https://127.0.0.1:3510"`
	CacheURL    string `env:"ROUTER_CACHE_URL, default=https://127.0.0.1:3520"`
	AuditURL    string `env:"ROUTER_AUDIT_URL, default=https://127.0.0.1:3540"`
	// MaxBodyBytes caps a Dapr HTTP or OpenAI-compatible request body.
	MaxBodyBytes int64 `env:"ROUTER_MAX_BODY_BYTES, default=4194304"`
	// RequestTimeout bounds a conversation whose client set no deadline.
	RequestTimeout time.Duration `env:"ROUTER_REQUEST_TIMEOUT, default=60s"`
	// WorkerIdleTimeout is how long a worker may stay silent before it is presumed dead.
	WorkerIdleTimeout time.Duration `env:"ROUTER_WORKER_IDLE_TIMEOUT, default=5s"`
	// WorkerHeartbeatMisses is how many heartbeats in a row a worker that announced its
	// heartbeat interval (WORKER_HEARTBEAT_INTERVAL) may miss before it is presumed dead,
	// when that is sooner than ROUTER_WORKER_IDLE_TIMEOUT; 0 keeps the idle timeout alone.
	WorkerHeartbeatMisses int `env:"ROUTER_WORKER_HEARTBEAT_MISSES, default=4"`
	// StreamWindow is the credit of a streamed dispatch: the chunks a worker may send
	// beyond those the router's caller has taken (docs/architecture.md, "Streams").
	StreamWindow int `env:"ROUTER_STREAM_WINDOW, default=32"`
	// DispatchAttempts is how many workers a request may be tried on.
	DispatchAttempts int `env:"ROUTER_DISPATCH_ATTEMPTS, default=2"`
	// NoWorkerWait is how long a request keeps trying a component that no worker serves
	// (workers reconnecting to another NATS node, or restarting) before it fails.
	NoWorkerWait time.Duration `env:"ROUTER_NO_WORKER_WAIT, default=1s"`
	// CacheTimeout bounds each cache call; a slower cache is skipped.
	CacheTimeout time.Duration `env:"ROUTER_CACHE_TIMEOUT, default=250ms"`
	// NearCacheBytes bounds the router's near cache in front of the cache service (keys,
	// values and overhead); 0 turns it off.
	NearCacheBytes int64 `env:"ROUTER_NEAR_CACHE_BYTES, default=67108864"`
	// AuditMode is "required" (a call fails when its audit event cannot be stored) or
	// "best-effort".
	AuditMode string `env:"AUDIT_MODE, default=required"`
	// MaxTexts refuses a request with more texts than the scrubber takes in one call.
	MaxTexts int `env:"ROUTER_MAX_TEXTS, default=4096"`
	// AuditScrub stores scrubbed text in the audit log for every request.
	AuditScrub bool `env:"ROUTER_AUDIT_SCRUB, default=true"`
	// AuditScrubMemoBytes bounds the memo of the scrubber's answers for audit copies
	// (scrubbed text only, keyed by a hash of the raw text, 10 minutes each); 0 turns it off.
	AuditScrubMemoBytes int64 `env:"ROUTER_AUDIT_SCRUB_MEMO_BYTES, default=16777216"`
	// AuditSealKeyFile, when set, is the audit service's X25519 public key (PEM): with
	// ROUTER_AUDIT_SCRUB, the texts only the audit copy needs scrubbed are sealed to it and
	// scrubbed by the audit service, off the reply's path (docs/security.md, "The sealed
	// audit copy"); unset, the router scrubs them itself.
	AuditSealKeyFile string `env:"ROUTER_AUDIT_SEAL_KEY_FILE"`
	// AuditPublishTimeout bounds the wait for the audit stream's ack.
	AuditPublishTimeout time.Duration `env:"ROUTER_AUDIT_PUBLISH_TIMEOUT, default=5s"`
	// AuditPublishAttemptTimeout bounds the wait for one attempt's ack, for each MiB of the
	// event begun (up to half of AuditPublishTimeout); a publish whose ack is lost (a NATS
	// node went, the stream changed leader) is sent again until AuditPublishTimeout, and
	// stored once.
	AuditPublishAttemptTimeout time.Duration `env:"ROUTER_AUDIT_PUBLISH_ATTEMPT_TIMEOUT, default=1s"`
	// AuditStreamReplicas is used when the router creates the audit stream.
	AuditStreamReplicas int `env:"AUDIT_STREAM_REPLICAS, default=1"`
	// APIToken, when set, must come with every API call in the dapr-api-token header, as
	// daprd's DAPR_API_TOKEN (the OpenAI-compatible API also takes it as
	// Authorization: Bearer).
	APIToken apitoken.Token `env:"DAPR_API_TOKEN"`
	// APIKeysFile, when set, holds the API keys (docs/tenants.md): callers present a key,
	// which names their tenant and limits; DAPR_API_TOKEN is then ignored.
	APIKeysFile string `env:"ROUTER_API_KEYS_FILE"`
	// APIKeyPepper (or the file APIKeyPepperFile) is the HMAC key the keys file's hashes
	// are made with; required with ROUTER_API_KEYS_FILE.
	APIKeyPepper     apitoken.Token `env:"ROUTER_API_KEY_PEPPER"`
	APIKeyPepperFile string         `env:"ROUTER_API_KEY_PEPPER_FILE"`
	// APIKeysReloadInterval is how often the keys file is re-read: a revoked key is
	// refused within it.
	APIKeysReloadInterval time.Duration `env:"ROUTER_API_KEYS_RELOAD_INTERVAL, default=5s"`
	// LimitsReplicas is used when the router creates the limits bucket.
	LimitsReplicas int `env:"ROUTER_LIMITS_REPLICAS, default=1"`
	// AppID and Namespace are the app_id and namespace labels of daprd's conversation
	// metrics (dapr_component_conversation_*), so daprd's dashboards select Parley.
	AppID     string `env:"ROUTER_APP_ID, default=parley"`
	Namespace string `env:"NAMESPACE, default=default"`
}

// Validate checks cross-field rules.
func (c *Config) Validate() error {
	var errs []error
	if c.AuditMode != "required" && c.AuditMode != "best-effort" {
		errs = append(errs, fmt.Errorf("AUDIT_MODE must be required or best-effort, got %q", c.AuditMode))
	}
	positive := map[string]int64{
		"ROUTER_MAX_BODY_BYTES": c.MaxBodyBytes, "ROUTER_DISPATCH_ATTEMPTS": int64(c.DispatchAttempts),
		"ROUTER_REQUEST_TIMEOUT": int64(c.RequestTimeout), "ROUTER_WORKER_IDLE_TIMEOUT": int64(c.WorkerIdleTimeout),
		"ROUTER_CACHE_TIMEOUT": int64(c.CacheTimeout), "ROUTER_AUDIT_PUBLISH_TIMEOUT": int64(c.AuditPublishTimeout),
		"AUDIT_STREAM_REPLICAS": int64(c.AuditStreamReplicas), "ROUTER_MAX_TEXTS": int64(c.MaxTexts),
		"ROUTER_API_KEYS_RELOAD_INTERVAL": int64(c.APIKeysReloadInterval), "ROUTER_LIMITS_REPLICAS": int64(c.LimitsReplicas),
		"ROUTER_AUDIT_PUBLISH_ATTEMPT_TIMEOUT": int64(c.AuditPublishAttemptTimeout),
	}
	for name, v := range positive {
		if v <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive", name))
		}
	}
	if c.AuditScrubMemoBytes < 0 {
		errs = append(errs, fmt.Errorf("ROUTER_AUDIT_SCRUB_MEMO_BYTES must not be negative, got %d", c.AuditScrubMemoBytes))
	}
	if c.NearCacheBytes < 0 {
		errs = append(errs, fmt.Errorf("ROUTER_NEAR_CACHE_BYTES must not be negative, got %d", c.NearCacheBytes))
	}
	if c.AuditPublishAttemptTimeout > c.AuditPublishTimeout {
		errs = append(errs, fmt.Errorf("ROUTER_AUDIT_PUBLISH_ATTEMPT_TIMEOUT (%s) must not exceed ROUTER_AUDIT_PUBLISH_TIMEOUT (%s)", c.AuditPublishAttemptTimeout, c.AuditPublishTimeout))
	}
	if c.NoWorkerWait < 0 {
		errs = append(errs, fmt.Errorf("ROUTER_NO_WORKER_WAIT must not be negative, got %s", c.NoWorkerWait))
	}
	if c.WorkerHeartbeatMisses < 0 {
		errs = append(errs, fmt.Errorf("ROUTER_WORKER_HEARTBEAT_MISSES must not be negative, got %d", c.WorkerHeartbeatMisses))
	}
	if c.StreamWindow < 2 || c.StreamWindow > 1024 {
		errs = append(errs, fmt.Errorf("ROUTER_STREAM_WINDOW must be between 2 and 1024, got %d", c.StreamWindow))
	}
	if c.APIKeysFile != "" && c.APIKeyPepper == "" && c.APIKeyPepperFile == "" {
		errs = append(errs, errors.New("ROUTER_API_KEYS_FILE needs ROUTER_API_KEY_PEPPER or ROUTER_API_KEY_PEPPER_FILE"))
	}
	if c.APIKeyPepper != "" && c.APIKeyPepperFile != "" {
		errs = append(errs, errors.New("set one of ROUTER_API_KEY_PEPPER and ROUTER_API_KEY_PEPPER_FILE"))
	}
	return errors.Join(errs...)
}

// Module is the router's fx module.
var Module = fx.Module("router",
	platform.Bus,
	platform.Clients,
	// The router's ports are the public edge: callers have no certificates, so they serve
	// without TLS and authenticate callers by API token.
	fx.Supply(rpcserver.Defaults{Addr: "127.0.0.1:3500", GRPCAddrs: []string{"127.0.0.1:50001"}, Public: true}),
	fx.Provide(
		config.Provider[Config](),
		func(c Config) (*upstream.Components, error) { return upstream.LoadComponents(c.ComponentsDir) },
		newDispatcher,
		newAuditPublisher,
		func(f *rpcclient.Factory, c Config) (*upstream.Scrubber, error) {
			if err := f.CheckURL("ROUTER_SCRUBBER_URL", c.ScrubberURL); err != nil {
				return nil, err
			}
			return upstream.NewScrubber(piiv1connect.NewScrubberServiceClient(f.RPC(identity.Scrubber), c.ScrubberURL, f.Options()...)), nil
		},
		func(f *rpcclient.Factory, c Config, reg prometheus.Registerer) (*upstream.Cache, error) {
			if err := f.CheckURL("ROUTER_CACHE_URL", c.CacheURL); err != nil {
				return nil, err
			}
			return upstream.NewCache(cachev1connect.NewCacheServiceClient(f.RPC(identity.Cache), c.CacheURL, f.Options()...), c.CacheTimeout, reg)
		},
		func(f *rpcclient.Factory, c Config, l *slog.Logger) (*auditapi.Handler, error) {
			if err := f.CheckURL("ROUTER_AUDIT_URL", c.AuditURL); err != nil {
				return nil, err
			}
			return auditapi.New(auditv1connect.NewAuditServiceClient(f.RPC(identity.Audit), c.AuditURL, f.Options()...), l), nil
		},
		newCache,
		newService,
		func(s *conversation.Service, comps *upstream.Components, c Config, l *slog.Logger) *daprapi.Handler {
			return daprapi.New(s, comps, daprapi.Options{MaxBodyBytes: c.MaxBodyBytes, Timeout: c.RequestTimeout}, l)
		},
		func(s *conversation.Service, c Config, l *slog.Logger) *nativeapi.Handler {
			return nativeapi.New(s, c.RequestTimeout, l)
		},
		func(s *conversation.Service, comps *upstream.Components, g *apikey.Guard, c Config, l *slog.Logger) *openaiapi.Handler {
			return openaiapi.New(s, comps, g, openaiapi.Options{MaxBodyBytes: c.MaxBodyBytes, Timeout: c.RequestTimeout, AdmitStatus: apikey.HTTPStatus}, l)
		},
		newTokenGuard,
		newGuard,
		// Every API route checks the API token; health, readiness, metrics, grpc.health.v1
		// and reflection are rpcserver's own routes and stay open.
		rpcserver.AsRoute(func(h *daprapi.Handler, mw *rpcserver.Middleware, g *apikey.Guard) rpcserver.Route {
			path, handler := runtimev1connect.NewDaprHandler(h, mw.HandlerOption(), connect.WithInterceptors(daprapi.Unimplemented{}, g.Interceptor()))
			return rpcserver.Route{Pattern: path, Handler: g.DaprRPC(handler), Service: runtimev1connect.DaprName}
		}),
		newHealth,
		// Dapr's health API needs no token, as daprd's (AlwaysAllowed).
		rpcserver.AsRoute(func(h *daprapi.Health) rpcserver.Route {
			return rpcserver.Route{Pattern: "GET /v1.0/healthz", Handler: http.HandlerFunc(h.Healthz)}
		}),
		rpcserver.AsRoute(func(h *daprapi.Health) rpcserver.Route {
			return rpcserver.Route{Pattern: "GET /v1.0/healthz/outbound", Handler: http.HandlerFunc(h.Outbound)}
		}),
		rpcserver.AsRoute(func(h *daprapi.Handler, g *apikey.Guard, tel *telemetry.Telemetry) rpcserver.Route {
			return rpcserver.Route{Pattern: "POST /v1.0-alpha1/conversation/{name}/converse", Handler: tel.HTTPHandler("POST", "/v1.0-alpha1/conversation/{name}/converse", g.DaprHTTP(http.HandlerFunc(h.HTTPAlpha1)))}
		}),
		rpcserver.AsRoute(func(h *daprapi.Handler, g *apikey.Guard, tel *telemetry.Telemetry) rpcserver.Route {
			return rpcserver.Route{Pattern: "POST /v1.0-alpha2/conversation/{name}/converse", Handler: tel.HTTPHandler("POST", "/v1.0-alpha2/conversation/{name}/converse", g.DaprHTTP(http.HandlerFunc(h.HTTPAlpha2)))}
		}),
		rpcserver.AsRoute(func(h *daprapi.Handler, g *apikey.Guard) rpcserver.Route {
			return rpcserver.Route{Pattern: "GET /v1.0/metadata", Handler: g.DaprHTTP(http.HandlerFunc(h.Metadata))}
		}),
		rpcserver.AsRoute(func(h *nativeapi.Handler, mw *rpcserver.Middleware, g *apikey.Guard) rpcserver.Route {
			path, handler := conversationv1connect.NewConversationServiceHandler(h, mw.HandlerOption(), connect.WithInterceptors(g.Interceptor()))
			return rpcserver.Route{Pattern: path, Handler: g.RPC(handler), Service: conversationv1connect.ConversationServiceName}
		}),
		// The OpenAI-compatible API takes the token as OpenAI's SDKs send their key
		// (Authorization: Bearer), or in dapr-api-token; it refuses in OpenAI's shape.
		rpcserver.AsRoute(func(h *openaiapi.Handler, g *apikey.Guard) rpcserver.Route {
			return rpcserver.Route{Pattern: "POST /v1/chat/completions", Handler: g.Authenticate(http.HandlerFunc(h.ChatCompletions), refuseOpenAI)}
		}),
		rpcserver.AsRoute(func(h *openaiapi.Handler, g *apikey.Guard) rpcserver.Route {
			return rpcserver.Route{Pattern: "GET /v1/models", Handler: g.Authenticate(http.HandlerFunc(h.Models), refuseOpenAI)}
		}),
		rpcserver.AsRoute(func(h *openaiapi.Handler, g *apikey.Guard) rpcserver.Route {
			return rpcserver.Route{Pattern: "GET /v1/models/{id}", Handler: g.Authenticate(http.HandlerFunc(h.Model), refuseOpenAI)}
		}),
		rpcserver.AsRoute(func(h *openaiapi.Handler, g *apikey.Guard) rpcserver.Route {
			return rpcserver.Route{Pattern: "/v1/", Handler: g.Authenticate(http.HandlerFunc(h.NotFound), refuseOpenAI)}
		}),
		rpcserver.AsRoute(func(h *auditapi.Handler, mw *rpcserver.Middleware, g *apikey.Guard) rpcserver.Route {
			path, handler := auditv1connect.NewAuditServiceHandler(h, mw.HandlerOption())
			return rpcserver.Route{Pattern: path, Handler: g.RPC(handler), Service: auditv1connect.AuditServiceName}
		}),
	),
	consoleRoutes,
)

// consoleRoutes serve the web console and the component list it shows. The console's
// pages are public files holding no data; the data comes from the APIs, each behind the
// API token as every API route.
var consoleRoutes = fx.Provide(
	console.New,
	rpcserver.AsRoute(func(h *console.Handler) rpcserver.Route {
		return rpcserver.Route{Pattern: "GET " + console.Prefix, Handler: h}
	}),
	rpcserver.AsRoute(func(h *console.Handler) rpcserver.Route {
		return rpcserver.Route{Pattern: "GET " + strings.TrimSuffix(console.Prefix, "/"), Handler: h}
	}),
	newPresence,
	rpcserver.AsRoute(func(comps *upstream.Components, p *presence.Table, mw *rpcserver.Middleware, g *apikey.Guard) rpcserver.Route {
		path, handler := componentv1connect.NewComponentServiceHandler(componentapi.New(comps, p), mw.HandlerOption())
		return rpcserver.Route{Pattern: path, Handler: g.RPC(handler), Service: componentv1connect.ComponentServiceName}
	}),
)

// refuseOpenAI answers a call to the OpenAI-compatible API without a valid token with
// OpenAI's 401.
func refuseOpenAI(w http.ResponseWriter, _ *http.Request, missing bool) {
	openaiapi.WriteError(w, openaiapi.Unauthorized(missing))
}

// newPresence is the table of the workers announcing the router's components
// (parley.workers.<component>): the console's live worker count and the
// parley_router_workers gauge. It listens from start to stop.
func newPresence(lc fx.Lifecycle, comps *upstream.Components, c *bus.Conn, reg prometheus.Registerer) (*presence.Table, error) {
	names := make([]string, 0, len(comps.List()))
	for _, comp := range comps.List() {
		names = append(names, comp.Name)
	}
	t := presence.New(names, presence.Options{})
	if err := reg.Register(t); err != nil {
		return nil, fmt.Errorf("register presence metrics: %w", err)
	}
	lc.Append(fx.Hook{
		OnStart: func(context.Context) error { return t.Subscribe(c.Conn) },
		OnStop:  func(context.Context) error { return t.Close() },
	})
	return t, nil
}

// healthParams are newHealth's dependencies: the router's readiness checks, the ones its
// /readyz runs.
type healthParams struct {
	fx.In

	Checks []rpcserver.Check `group:"readiness_checks"`
}

// newHealth answers Dapr's health API from the checks that make the router's /readyz.
func newHealth(p healthParams) *daprapi.Health { return daprapi.NewHealth(p.Checks) }

func newTokenGuard(c Config, reg prometheus.Registerer, logger *slog.Logger) (*apitoken.Guard, error) {
	if c.APIKeysFile != "" {
		return apitoken.New("", reg, logger) // API keys replace the single token
	}
	return apitoken.New(c.APIToken, reg, logger)
}

// newGuard authenticates callers: by API key with ROUTER_API_KEYS_FILE (limits shared
// through the NATS limits bucket), else by DAPR_API_TOKEN, else not at all (a warning).
func newGuard(lc fx.Lifecycle, c Config, token *apitoken.Guard, js jetstream.JetStream, reg prometheus.Registerer, logger *slog.Logger) (*apikey.Guard, error) {
	if c.APIKeysFile == "" {
		g, err := apikey.NewGuard(nil, token, nil, reg, logger)
		if err != nil {
			return nil, err
		}
		switch g.Mode() {
		case "token":
			logger.Info("api token authentication enabled", "header", apitoken.Header)
		default:
			logger.Warn("the router's APIs are open: neither ROUTER_API_KEYS_FILE nor DAPR_API_TOKEN is set, so any caller is served as tenant default")
		}
		return g, nil
	}
	if c.APIToken != "" {
		logger.Warn("DAPR_API_TOKEN is ignored: ROUTER_API_KEYS_FILE is set")
	}
	pepper, err := apikey.ReadPepper(string(c.APIKeyPepper), c.APIKeyPepperFile)
	if err != nil {
		return nil, fmt.Errorf("ROUTER_API_KEY_PEPPER: %w", err)
	}
	reloads := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "parley_router_api_keys_reloads_total",
		Help: "Reloads of a changed API keys file, by outcome (ok, error: the previous keys stay in force).",
	}, []string{"outcome"})
	if err := reg.Register(reloads); err != nil {
		return nil, err
	}
	keys, err := apikey.NewKeyring(c.APIKeysFile, pepper, c.APIKeysReloadInterval, logger, func(ok bool) {
		if ok {
			reloads.WithLabelValues("ok").Inc()
		} else {
			reloads.WithLabelValues("error").Inc()
		}
	})
	if err != nil {
		return nil, fmt.Errorf("ROUTER_API_KEYS_FILE: %w", err)
	}
	lc.Append(fx.StartStopHook(keys.Start, keys.Stop))
	limiter, err := ratelimit.New(js, ratelimit.Options{Replicas: c.LimitsReplicas}, reg)
	if err != nil {
		return nil, err
	}
	lc.Append(fx.StartHook(limiter.Start))
	return apikey.NewGuard(keys, nil, limiter, reg, logger)
}

func newDispatcher(lc fx.Lifecycle, c *bus.Conn, tel *telemetry.Telemetry, cfg Config, reg prometheus.Registerer) (*upstream.Dispatcher, error) {
	d, err := upstream.NewDispatcher(c.Conn, tel.Propagator, upstream.DispatcherConfig{
		IdleTimeout: cfg.WorkerIdleTimeout, Attempts: cfg.DispatchAttempts, HeartbeatMisses: cfg.WorkerHeartbeatMisses,
		StreamWindow: cfg.StreamWindow,
		Tracer:       tel.Tracer(tracerName),
		NoWorkerWait: cfg.NoWorkerWait,
	}, reg)
	if err != nil {
		return nil, err
	}
	lc.Append(fx.StopHook(d.Close))
	return d, nil
}

// tracerName is the instrumentation scope of the router's own spans.
const tracerName = "github.com/parleyhq/parley/services/router"

func newAuditPublisher(lc fx.Lifecycle, js jetstream.JetStream, cfg Config, tel *telemetry.Telemetry, reg prometheus.Registerer) (*upstream.AuditPublisher, error) {
	lc.Append(fx.StartHook(func(ctx context.Context) error {
		_, err := auditevent.Ensure(ctx, js, cfg.AuditStreamReplicas)
		return err
	}))
	return upstream.NewAuditPublisher(js, upstream.AuditConfig{Timeout: cfg.AuditPublishTimeout, AttemptTimeout: cfg.AuditPublishAttemptTimeout},
		tel.Propagator, tel.Tracer(tracerName), reg)
}

// newAuditSealer seals to the audit service's public key in path, read once at start.
func newAuditSealer(path string) (*seal.Sealer, error) {
	pub, err := seal.ReadPublicKeyFile(path)
	if err != nil {
		return nil, fmt.Errorf("ROUTER_AUDIT_SEAL_KEY_FILE %s: %w", path, err)
	}
	s, err := seal.NewSealer(pub, 0, 0)
	if err != nil {
		return nil, fmt.Errorf("ROUTER_AUDIT_SEAL_KEY_FILE %s: %w", path, err)
	}
	return s, nil
}

// newCache is the cache service behind the router's near cache (ROUTER_NEAR_CACHE_BYTES),
// or the cache service alone when the near cache is off.
func newCache(lc fx.Lifecycle, shared *upstream.Cache, c *bus.Conn, cfg Config, logger *slog.Logger, reg prometheus.Registerer) (conversation.Cache, error) {
	if cfg.NearCacheBytes == 0 {
		return shared, nil
	}
	near, err := nearcache.New(shared, c.Conn, cfg.NearCacheBytes, logger, reg)
	if err != nil {
		return nil, err
	}
	lc.Append(fx.StopHook(near.Close))
	return near, nil
}

func newService(lc fx.Lifecycle, comps *upstream.Components, scrubber *upstream.Scrubber, cache conversation.Cache, d *upstream.Dispatcher,
	audit *upstream.AuditPublisher, cfg Config, tel *telemetry.Telemetry, logger *slog.Logger, reg prometheus.Registerer,
) (*conversation.Service, error) {
	if m := audit.MaxEventBytes(); m > 0 && int64(m/2) < cfg.MaxBodyBytes {
		logger.Warn("NATS max_payload is too small for ROUTER_MAX_BODY_BYTES: requests whose audit copy exceeds half of it are refused",
			"max_payload", m+upstream.HeaderAllowance, "max_body_bytes", cfg.MaxBodyBytes, "recommended_max_payload", bus.MaxPayload)
	}
	opts := conversation.Options{
		AuditRequired: cfg.AuditMode == "required", AuditScrub: cfg.AuditScrub, MaxTexts: cfg.MaxTexts,
		AuditScrubMemoBytes: cfg.AuditScrubMemoBytes, Tracer: tel.Tracer(tracerName),
		AppID: cfg.AppID, Namespace: cfg.Namespace,
	}
	if cfg.AuditSealKeyFile != "" {
		sealer, err := newAuditSealer(cfg.AuditSealKeyFile)
		if err != nil {
			return nil, err
		}
		opts.AuditSealer = sealer
		if cfg.AuditScrub {
			logger.Info("audit copies sealed to the audit service, which scrubs them", "key_file", cfg.AuditSealKeyFile)
		} else {
			logger.Warn("ROUTER_AUDIT_SEAL_KEY_FILE has no effect with ROUTER_AUDIT_SCRUB=false: audit copies keep the texts no caller asked to scrub")
		}
	}
	svc, err := conversation.New(comps, scrubber, cache, d, audit, opts, logger, reg)
	if err != nil {
		return nil, err
	}
	// Stopped before the clients and the NATS connection it writes through: the cache
	// writes still running after their replies finish first.
	lc.Append(fx.StopHook(svc.Close))
	return svc, nil
}
