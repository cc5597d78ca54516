package apikey_test

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/parleyhq/parley/libs/natstest"
	"github.com/parleyhq/parley/services/router/internal/apikey"
	"github.com/parleyhq/parley/services/router/internal/ratelimit"
	"github.com/parleyhq/parley/services/router/internal/tenant"
)

// BenchmarkGuard is the edge's cost per request: the key's HMAC and lookup, and the
// admission against requests and tokens per minute and a budget, on a Dapr HTTP route.
// leases/op counts the requests that left the router for the shared counters (NATS).
func BenchmarkGuard(b *testing.B) {
	for _, limited := range []bool{false, true} {
		name := "auth-only"
		if limited {
			name = "auth+limits"
		}
		b.Run(name, func(b *testing.B) {
			k := apikey.Key{ID: "bench", Tenant: "t"}
			if limited {
				k.RequestsPerMinute, k.TokensPerMinute, k.TokenBudget, k.BudgetPeriod = 1e12, 1e15, 1e15, apikey.Month
			}
			ks := newKeyset(b, k)
			path := filepath.Join(b.TempDir(), "keys.yaml")
			ks.write(b, path)
			keys, err := apikey.NewKeyring(path, pepper, time.Hour, discard(), nil)
			require.NoError(b, err)
			var l *ratelimit.Limiter
			reg := prometheus.NewRegistry()
			if limited {
				srv := natstest.RunServer(b)
				nc, err := nats.Connect(srv.ClientURL())
				require.NoError(b, err)
				b.Cleanup(nc.Close)
				js, err := jetstream.New(nc)
				require.NoError(b, err)
				l, err = ratelimit.New(js, ratelimit.Options{}, reg)
				require.NoError(b, err)
				require.NoError(b, l.Start(b.Context()))
			}
			var lim apikey.Limiter
			if l != nil {
				lim = l
			}
			g, err := apikey.NewGuard(keys, nil, lim, prometheus.NewRegistry(), discard())
			require.NoError(b, err)
			mux := http.NewServeMux()
			mux.Handle("POST /v1.0-alpha2/conversation/{name}/converse", g.DaprHTTP(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				tenant.From(r.Context()).Settle(30)
			})))
			body := strings.Repeat("x", 400)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				r := httptest.NewRequest(http.MethodPost, "/v1.0-alpha2/conversation/echo/converse", strings.NewReader(body))
				r.Header.Set("dapr-api-token", ks.keys["bench"])
				w := httptest.NewRecorder()
				mux.ServeHTTP(w, r)
				if w.Code != http.StatusOK {
					b.Fatalf("status %d", w.Code)
				}
			}
			b.StopTimer()
			if limited {
				mfs, err := reg.Gather()
				require.NoError(b, err)
				var total float64
				for _, mf := range mfs {
					if mf.GetName() == "parley_router_limit_leases_total" {
						for _, m := range mf.GetMetric() {
							total += m.GetCounter().GetValue()
						}
					}
				}
				b.ReportMetric(total/float64(b.N), "leases/op")
			}
		})
	}
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }
