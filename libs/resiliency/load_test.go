package resiliency_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/parleyhq/parley/libs/resiliency"
)

// writeDir writes files into a new directory and returns it.
func writeDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600))
	}
	return dir
}

// llmResiliency is the example of the Dapr conversation API reference (§5.1).
const llmResiliency = `apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata: { name: llm-resiliency }
scopes: [myapp]
spec:
  policies:
    timeouts:
      llmTimeout: 60s
    retries:
      llmRetry:
        policy: exponential      # or constant (uses duration)
        maxInterval: 10s
        maxRetries: 3            # -1 = infinite
    circuitBreakers:
      llmCB:
        maxRequests: 1
        interval: 0s
        timeout: 30s
        trip: consecutiveFailures > 3
  targets:
    components:
      openai:                    # component metadata.name
        outbound:
          timeout: llmTimeout
          retry: llmRetry
          circuitBreaker: llmCB
`

const echoComponent = `apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: echo
spec:
  type: conversation.echo
  version: v1
`

func doc(name, body string) string {
	return "apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata:\n  name: " + name + "\nspec:\n" + body
}

func TestLoad(t *testing.T) {
	t.Parallel()
	type (
		timeout struct {
			name string
			want time.Duration
		}
		retry struct {
			name string
			want resiliency.Retry
		}
		breaker struct {
			name string
			want resiliency.CircuitBreaker // Trip compared by its text
			trip string
		}
		target struct {
			component string
			want      resiliency.Names
		}
	)
	tests := []struct {
		name      string
		files     map[string]string
		wantEmpty bool
		timeouts  []timeout
		retries   []retry
		breakers  []breaker
		targets   []target
	}{
		{
			name:      "empty directory",
			wantEmpty: true,
			targets:   []target{{"openai", resiliency.Names{}}},
		},
		{
			name:      "components and other kinds only",
			files:     map[string]string{"echo.yaml": echoComponent + "---\napiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata: {name: c}\nspec: {}\n", "notes.txt": "kind: Resiliency"},
			wantEmpty: true,
		},
		{
			name:     "the reference example",
			files:    map[string]string{"resiliency.yaml": llmResiliency, "echo.yaml": echoComponent},
			timeouts: []timeout{{"llmTimeout", time.Minute}},
			retries: []retry{{"llmRetry", resiliency.Retry{
				Name: "llmRetry", Policy: resiliency.BackoffExponential, Duration: 5 * time.Second,
				InitialInterval: 500 * time.Millisecond, MaxInterval: 10 * time.Second, MaxRetries: 3,
			}}},
			breakers: []breaker{{"llmCB", resiliency.CircuitBreaker{Name: "llmCB", MaxRequests: 1, Timeout: 30 * time.Second}, "consecutiveFailures > 3"}},
			targets: []target{
				{"openai", resiliency.Names{Timeout: "llmTimeout", Retry: "llmRetry", CircuitBreaker: "llmCB"}},
				{"echo", resiliency.Names{}},
			},
		},
		{
			name: "defaults",
			files: map[string]string{"r.yaml": doc("d", `  policies:
    retries:
      bare: {}
      constant: {policy: Constant}
      expo: {policy: exponential}
    circuitBreakers:
      bare: {}
      zeros: {maxRequests: 0, timeout: 0, trip: ""}
`)},
			retries: []retry{
				{"bare", resiliency.Retry{Name: "bare", Policy: resiliency.BackoffConstant, Duration: 5 * time.Second,
					InitialInterval: 500 * time.Millisecond, MaxInterval: time.Minute, MaxRetries: -1}},
				{"constant", resiliency.Retry{Name: "constant", Policy: resiliency.BackoffConstant, Duration: 5 * time.Second,
					InitialInterval: 500 * time.Millisecond, MaxInterval: time.Minute, MaxRetries: -1}},
				{"expo", resiliency.Retry{Name: "expo", Policy: resiliency.BackoffExponential, Duration: 5 * time.Second,
					InitialInterval: 500 * time.Millisecond, MaxInterval: time.Minute, MaxRetries: -1}},
			},
			breakers: []breaker{
				{"bare", resiliency.CircuitBreaker{Name: "bare", MaxRequests: 1, Timeout: time.Minute}, "consecutiveFailures > 5"},
				{"zeros", resiliency.CircuitBreaker{Name: "zeros", MaxRequests: 1, Timeout: time.Minute}, "consecutiveFailures > 5"},
			},
		},
		{
			name: "policies and targets merge across files",
			files: map[string]string{
				"a-policies.yaml": doc("policies", "  policies:\n    timeouts:\n      t: 2s\n    retries:\n      r: {maxRetries: 2}\n"),
				"b-targets.yaml": doc("targets", "  targets:\n    components:\n      openai:\n        outbound: {timeout: t, retry: r}\n"+
					"      anthropic:\n        inbound: {timeout: t}\n    apps:\n      other-app: {timeout: t}\n"),
			},
			timeouts: []timeout{{"t", 2 * time.Second}},
			targets: []target{
				{"openai", resiliency.Names{Timeout: "t", Retry: "r"}},
				{"anthropic", resiliency.Names{}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			set, err := resiliency.Load(writeDir(t, tt.files))
			require.NoError(t, err)
			require.Equal(t, tt.wantEmpty, set.Empty())
			for _, to := range tt.timeouts {
				got, ok := set.Timeout(to.name)
				require.True(t, ok, to.name)
				require.Equal(t, to.want, got)
			}
			for _, r := range tt.retries {
				got, ok := set.Retry(r.name)
				require.True(t, ok, r.name)
				require.Equal(t, r.want, got)
			}
			for _, b := range tt.breakers {
				got, ok := set.CircuitBreaker(b.name)
				require.True(t, ok, b.name)
				require.Equal(t, b.trip, got.Trip.String())
				got.Trip = nil
				require.Equal(t, b.want, got)
			}
			for _, tg := range tt.targets {
				p := set.ForComponent(tg.component)
				require.Equal(t, tg.want, p.Names(), tg.component)
				require.Equal(t, tg.component, p.Component())
				require.Same(t, p, set.ForComponent(tg.component), "one policy, so one breaker, per component")
			}
		})
	}
}

func TestLoadEveryField(t *testing.T) {
	t.Parallel()
	set, err := resiliency.Load(writeDir(t, map[string]string{"r.yml": doc("all", `  policies:
    timeouts:
      ms: 1500
      zero: 0
      go: 1m30s
    retries:
      all:
        policy: exponential
        duration: 250
        initialInterval: 100ms
        maxInterval: 2s
        maxRetries: 0
        matching:
          httpStatusCodes: "429,500-599"
          gRPCStatusCodes: "1-4,8-11,13,14"
    circuitBreakers:
      all:
        maxRequests: 3
        interval: 10s
        timeout: 45000
        trip: requests > 10 && !(totalFailures <= 2) || consecutiveSuccesses == 0 != (totalSuccesses != 1)
  targets:
    components:
      llm:
        outbound: {timeout: ms, retry: all, circuitBreaker: all}
`)}))
	require.NoError(t, err)
	for name, want := range map[string]time.Duration{"ms": 1500 * time.Millisecond, "zero": 0, "go": 90 * time.Second} {
		got, ok := set.Timeout(name)
		require.True(t, ok)
		require.Equal(t, want, got)
	}
	r, ok := set.Retry("all")
	require.True(t, ok)
	require.Equal(t, resiliency.Retry{
		Name: "all", Policy: resiliency.BackoffExponential, Duration: 250 * time.Millisecond,
		InitialInterval: 100 * time.Millisecond, MaxInterval: 2 * time.Second, MaxRetries: 0,
		HTTPStatusCodes: "429,500-599", GRPCStatusCodes: "1-4,8-11,13,14",
	}, r)
	cb, ok := set.CircuitBreaker("all")
	require.True(t, ok)
	require.Equal(t, uint32(3), cb.MaxRequests)
	require.Equal(t, 10*time.Second, cb.Interval)
	require.Equal(t, 45*time.Second, cb.Timeout)
	p := set.ForComponent("llm")
	require.Equal(t, 1500*time.Millisecond, p.Timeout())
	require.False(t, p.Empty())
	require.Equal(t, resiliency.StateClosed, p.State())
}

func TestDefaultPolicyLookup(t *testing.T) {
	t.Parallel()
	const (
		conv  = "DefaultConversationComponentOutbound"
		outb  = "DefaultComponentOutbound"
		comp  = "DefaultComponent"
		plain = "Default"
	)
	tests := []struct {
		name    string
		defined []string // levels defined for every kind
		want    string   // level chosen
	}{
		{"none", nil, ""},
		{"top level only", []string{plain}, plain},
		{"component beats top level", []string{plain, comp}, comp},
		{"outbound beats component", []string{plain, comp, outb}, outb},
		{"conversation beats all", []string{plain, comp, outb, conv}, conv},
		{"conversation alone", []string{conv}, conv},
		{"another type's default is ignored", []string{"DefaultStatestoreComponentOutbound"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var timeouts, retries, breakers strings.Builder
			for _, level := range tt.defined {
				timeouts.WriteString("      " + level + "TimeoutPolicy: 3s\n")
				retries.WriteString("      " + level + "RetryPolicy: {maxRetries: 1}\n")
				breakers.WriteString("      " + level + "CircuitBreakerPolicy: {}\n")
			}
			body := "  policies:\n    timeouts:\n" + timeouts.String() + "    retries:\n" + retries.String() +
				"    circuitBreakers:\n" + breakers.String() +
				"  targets:\n    components:\n      targeted:\n        outbound: {}\n"
			set, err := resiliency.Load(writeDir(t, map[string]string{"r.yaml": doc("defaults", body)}))
			require.NoError(t, err)

			var want resiliency.Names
			if tt.want != "" {
				want = resiliency.Names{
					Timeout: tt.want + "TimeoutPolicy", Retry: tt.want + "RetryPolicy", CircuitBreaker: tt.want + "CircuitBreakerPolicy",
				}
			}
			require.Equal(t, want, set.ForComponent("untargeted").Names())
			require.Equal(t, resiliency.Names{}, set.ForComponent("targeted").Names(), "a target entry turns the defaults off")
		})
	}
}

func TestDefaultPolicyLookupPerKind(t *testing.T) {
	t.Parallel()
	set, err := resiliency.Load(writeDir(t, map[string]string{"r.yaml": doc("defaults", `  policies:
    timeouts:
      DefaultTimeoutPolicy: 3s
    retries:
      DefaultConversationComponentOutboundRetryPolicy: {}
      DefaultRetryPolicy: {}
    circuitBreakers:
      DefaultComponentCircuitBreakerPolicy: {}
`)}))
	require.NoError(t, err)
	require.Equal(t, resiliency.Names{
		Timeout: "DefaultTimeoutPolicy", Retry: "DefaultConversationComponentOutboundRetryPolicy",
		CircuitBreaker: "DefaultComponentCircuitBreakerPolicy",
	}, set.ForComponent("any").Names())
}

func TestLoadErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		files map[string]string
		want  string // exact message, with the directory replaced by "<tmp>"
	}{
		{
			name:  "kind in the wrong case",
			files: map[string]string{"r.yaml": "apiVersion: dapr.io/v1alpha1\nkind: resiliency\n"},
			want:  `<tmp>/r.yaml: document 1: kind: "resiliency": must be exactly "Resiliency"`,
		},
		{
			name:  "wrong apiVersion",
			files: map[string]string{"r.yaml": "apiVersion: dapr.io/v1\nkind: Resiliency\nmetadata: {name: r}\n"},
			want:  `<tmp>/r.yaml: resiliency "r": apiVersion: "dapr.io/v1": must be "dapr.io/v1alpha1"`,
		},
		{
			name:  "YAML syntax",
			files: map[string]string{"r.yaml": "kind: Resiliency\nspec: [\n"},
			want:  "<tmp>/r.yaml: parse YAML: yaml: line 2: did not find expected node content",
		},
		{
			name:  "unknown top-level field",
			files: map[string]string{"r.yaml": doc("r", "  policies: {}\nstatus: {}\n")},
			want:  `<tmp>/r.yaml: resiliency "r": unknown field "status" (want apiVersion, kind, metadata, spec, scopes)`,
		},
		{
			name:  "scopes not a list",
			files: map[string]string{"r.yaml": doc("r", "  policies: {}\nscopes: app\n")},
			want:  `<tmp>/r.yaml: resiliency "r": scopes: must be a list, got !!str "app"`,
		},
		{
			name:  "spec not a mapping",
			files: map[string]string{"r.yaml": "apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nspec: [1]\n"},
			want:  `<tmp>/r.yaml: document 1: spec: must be a mapping, got a list`,
		},
		{
			name:  "unknown policy kind",
			files: map[string]string{"r.yaml": doc("r", "  policies:\n    bulkheads: {}\n")},
			want:  `<tmp>/r.yaml: resiliency "r": spec.policies: unknown field "bulkheads" (want timeouts, retries, circuitBreakers)`,
		},
		{
			name:  "bad timeout",
			files: map[string]string{"r.yaml": doc("r", "  policies:\n    timeouts:\n      t: soon\n")},
			want:  `<tmp>/r.yaml: resiliency "r": spec.policies.timeouts.t: invalid duration "soon" (want e.g. 500ms, 5s, 1m30s, or milliseconds)`,
		},
		{
			name:  "negative timeout",
			files: map[string]string{"r.yaml": doc("r", "  policies:\n    timeouts:\n      t: -1s\n")},
			want:  `<tmp>/r.yaml: resiliency "r": spec.policies.timeouts.t: invalid duration "-1s": must not be negative`,
		},
		{
			name:  "empty timeout",
			files: map[string]string{"r.yaml": doc("r", "  policies:\n    timeouts:\n      t:\n")},
			want:  `<tmp>/r.yaml: resiliency "r": spec.policies.timeouts.t: required`,
		},
		{
			name:  "unknown backoff policy",
			files: map[string]string{"r.yaml": doc("r", "  policies:\n    retries:\n      r: {policy: linear}\n")},
			want:  `<tmp>/r.yaml: resiliency "r": spec.policies.retries.r.policy: "linear": must be constant or exponential`,
		},
		{
			name:  "misspelt retry field",
			files: map[string]string{"r.yaml": doc("r", "  policies:\n    retries:\n      r: {maxRetry: 3}\n")},
			want: `<tmp>/r.yaml: resiliency "r": spec.policies.retries.r: unknown field "maxRetry" ` +
				`(want policy, duration, initialInterval, maxInterval, maxRetries, matching)`,
		},
		{
			name:  "maxRetries below -1",
			files: map[string]string{"r.yaml": doc("r", "  policies:\n    retries:\n      r: {maxRetries: -2}\n")},
			want:  `<tmp>/r.yaml: resiliency "r": spec.policies.retries.r.maxRetries: -2: must be -1 (no limit) or at least 0`,
		},
		{
			name:  "maxRetries not a number",
			files: map[string]string{"r.yaml": doc("r", "  policies:\n    retries:\n      r: {maxRetries: three}\n")},
			want:  `<tmp>/r.yaml: resiliency "r": spec.policies.retries.r.maxRetries: "three": not an integer`,
		},
		{
			name:  "initialInterval above maxInterval",
			files: map[string]string{"r.yaml": doc("r", "  policies:\n    retries:\n      r: {policy: exponential, initialInterval: 2s, maxInterval: 1s}\n")},
			want:  `<tmp>/r.yaml: resiliency "r": spec.policies.retries.r.initialInterval: 2s exceeds maxInterval 1s`,
		},
		{
			name:  "bad status code range",
			files: map[string]string{"r.yaml": doc("r", "  policies:\n    retries:\n      r:\n        matching: {httpStatusCodes: \"500-429\"}\n")},
			want:  `<tmp>/r.yaml: resiliency "r": spec.policies.retries.r.matching.httpStatusCodes: "500-429": range "500-429" ends before it starts`,
		},
		{
			name:  "gRPC code out of range",
			files: map[string]string{"r.yaml": doc("r", "  policies:\n    retries:\n      r:\n        matching: {gRPCStatusCodes: \"1,17\"}\n")},
			want:  `<tmp>/r.yaml: resiliency "r": spec.policies.retries.r.matching.gRPCStatusCodes: "1,17": code 17 outside 0-16`,
		},
		{
			name:  "bad trip",
			files: map[string]string{"r.yaml": doc("r", "  policies:\n    circuitBreakers:\n      cb: {trip: \"failures > 3\"}\n")},
			want: `<tmp>/r.yaml: resiliency "r": spec.policies.circuitBreakers.cb.trip: offset 0: unknown variable "failures" ` +
				`(want requests, totalSuccesses, totalFailures, consecutiveSuccesses or consecutiveFailures)`,
		},
		{
			name:  "negative maxRequests",
			files: map[string]string{"r.yaml": doc("r", "  policies:\n    circuitBreakers:\n      cb: {maxRequests: -1}\n")},
			want:  `<tmp>/r.yaml: resiliency "r": spec.policies.circuitBreakers.cb.maxRequests: "-1": not an integer between 0 and 4294967295`,
		},
		{
			name:  "unknown policy name in a target",
			files: map[string]string{"r.yaml": doc("r", "  targets:\n    components:\n      openai:\n        outbound:\n          retry: nope\n")},
			want:  `<tmp>/r.yaml: resiliency "r": spec.targets.components.openai.outbound.retry: unknown retry policy "nope"`,
		},
		{
			name:  "timeout name used as a circuit breaker",
			files: map[string]string{"r.yaml": doc("r", "  policies:\n    timeouts: {t: 1s}\n  targets:\n    components:\n      openai:\n        outbound: {circuitBreaker: t}\n")},
			want:  `<tmp>/r.yaml: resiliency "r": spec.targets.components.openai.outbound.circuitBreaker: unknown circuit breaker policy "t"`,
		},
		{
			name:  "Dapr 1.7 output instead of outbound",
			files: map[string]string{"r.yaml": doc("r", "  targets:\n    components:\n      openai:\n        output: {}\n")},
			want:  `<tmp>/r.yaml: resiliency "r": spec.targets.components.openai: unknown field "output" (want inbound, outbound)`,
		},
		{
			name: "policy defined twice",
			files: map[string]string{
				"a.yaml": doc("a", "  policies:\n    retries:\n      r: {}\n"),
				"b.yaml": "---\n" + doc("", "  policies:\n    retries:\n      r: {}\n"),
			},
			want: `<tmp>/b.yaml: document 1: spec.policies.retries.r: retry "r" is also defined in <tmp>/a.yaml (resiliency "a")`,
		},
		{
			name: "target defined twice",
			files: map[string]string{
				"a.yaml": doc("a", "  targets:\n    components:\n      openai: {}\n"),
				"b.yaml": doc("b", "  targets:\n    components:\n      openai: {}\n"),
			},
			want: `<tmp>/b.yaml: resiliency "b": spec.targets.components.openai: component target "openai" is also defined in <tmp>/a.yaml (resiliency "a")`,
		},
		{
			name:  "key defined twice",
			files: map[string]string{"r.yaml": doc("r", "  policies:\n    timeouts:\n      t: 1s\n      t: 2s\n")},
			want:  `<tmp>/r.yaml: resiliency "r": spec.policies.timeouts: line 9: key "t" defined twice`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := writeDir(t, tt.files)
			set, err := resiliency.Load(dir)
			require.Nil(t, set)
			require.Error(t, err)
			require.Equal(t, tt.want, strings.ReplaceAll(err.Error(), dir, "<tmp>"))
			if !strings.Contains(tt.want, "parse YAML") {
				var re *resiliency.Error
				require.ErrorAs(t, err, &re)
				require.Equal(t, filepath.Join(dir, filepath.Base(re.File)), re.File)
			}
		})
	}
}

func TestLoadReportsEveryProblem(t *testing.T) {
	t.Parallel()
	dir := writeDir(t, map[string]string{"r.yaml": doc("r", `  policies:
    timeouts: {t: soon}
    retries: {r: {maxRetries: x, policy: y}}
  targets:
    components:
      a: {outbound: {retry: missing}}
`)})
	_, err := resiliency.Load(dir)
	require.Error(t, err)
	msg := strings.ReplaceAll(err.Error(), dir, "<tmp>")
	require.Equal(t, strings.Join([]string{
		`<tmp>/r.yaml: resiliency "r": spec.policies.timeouts.t: invalid duration "soon" (want e.g. 500ms, 5s, 1m30s, or milliseconds)`,
		`<tmp>/r.yaml: resiliency "r": spec.policies.retries.r.policy: "y": must be constant or exponential`,
		`<tmp>/r.yaml: resiliency "r": spec.policies.retries.r.maxRetries: "x": not an integer`,
		`<tmp>/r.yaml: resiliency "r": spec.targets.components.a.outbound.retry: unknown retry policy "missing"`,
	}, "\n"), msg)
}

func TestLoadMissingDirectory(t *testing.T) {
	t.Parallel()
	_, err := resiliency.Load(filepath.Join(t.TempDir(), "absent"))
	require.ErrorIs(t, err, fs.ErrNotExist)
	require.ErrorContains(t, err, "read resiliency directory")
}

func TestLoadStateChangeOption(t *testing.T) {
	t.Parallel()
	var changes []string
	set, err := resiliency.Load(writeDir(t, map[string]string{"r.yaml": doc("r", `  policies:
    circuitBreakers:
      cb: {trip: consecutiveFailures > 0}
  targets:
    components:
      llm: {outbound: {circuitBreaker: cb}}
`)}), resiliency.WithStateChange(func(c string, from, to resiliency.State) {
		changes = append(changes, c+" "+from.String()+" "+to.String())
	}))
	require.NoError(t, err)
	p := set.ForComponent("llm")
	_, err = p.Run(t.Context(), func(_ context.Context) error { return errors.New("down") })
	require.Error(t, err)
	require.Equal(t, resiliency.StateOpen, p.State())
	require.Equal(t, []string{"llm closed open"}, changes)
}
