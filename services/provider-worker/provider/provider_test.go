package provider_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/libs/component"
	"github.com/parleyhq/parley/services/provider-worker/provider"
)

func clock() time.Time { return time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC) }

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := clock()
	tests := []struct {
		name   string
		header http.Header
		want   time.Duration
		wantOK bool
	}{
		{"none", http.Header{}, 0, false},
		{"seconds", http.Header{"Retry-After": {"120"}}, 120 * time.Second, true},
		{"zero seconds", http.Header{"Retry-After": {"0"}}, 0, true},
		{"seconds with spaces", http.Header{"Retry-After": {" 5 "}}, 5 * time.Second, true},
		{"IMF-fixdate", http.Header{"Retry-After": {"Wed, 25 Nov 2026 12:01:30 GMT"}}, 90 * time.Second, true},
		{"RFC 850 date", http.Header{"Retry-After": {"Wednesday, 25-Nov-26 12:00:10 GMT"}}, 10 * time.Second, true},
		{"ANSI C date", http.Header{"Retry-After": {"Wed Nov 25 12:00:05 2026"}}, 5 * time.Second, true},
		{"date in the past", http.Header{"Retry-After": {"Wed, 25 Nov 2026 11:00:00 GMT"}}, 0, true},
		{"date far ahead is clamped", http.Header{"Retry-After": {"Fri, 25 Dec 2026 12:00:00 GMT"}}, provider.MaxRetryAfter, true},
		{"huge seconds are clamped", http.Header{"Retry-After": {"999999999999999999999999"}}, provider.MaxRetryAfter, true},
		{"negative seconds", http.Header{"Retry-After": {"-5"}}, 0, false},
		{"fractional seconds", http.Header{"Retry-After": {"1.5"}}, 0, false},
		{"garbage", http.Header{"Retry-After": {"soon"}}, 0, false},
		{"retry-after-ms", http.Header{"Retry-After-Ms": {"250"}}, 250 * time.Millisecond, true},
		{"fractional retry-after-ms", http.Header{"Retry-After-Ms": {"1.5"}}, 1500 * time.Microsecond, true},
		{"retry-after-ms wins", http.Header{"Retry-After-Ms": {"100"}, "Retry-After": {"9"}}, 100 * time.Millisecond, true},
		{"azure x-ms-retry-after-ms", http.Header{"X-Ms-Retry-After-Ms": {"2000"}}, 2 * time.Second, true},
		{"bad ms falls back to Retry-After", http.Header{"Retry-After-Ms": {"NaN"}, "Retry-After": {"3"}}, 3 * time.Second, true},
		{"negative ms falls back", http.Header{"Retry-After-Ms": {"-1"}, "Retry-After": {"3"}}, 3 * time.Second, true},
		{"infinite ms is clamped", http.Header{"Retry-After-Ms": {"+Inf"}}, provider.MaxRetryAfter, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, ok := provider.ParseRetryAfter(tt.header, now)
			require.Equal(t, tt.wantOK, ok)
			require.Equal(t, tt.want, got)
		})
	}
}

func FuzzParseRetryAfter(f *testing.F) {
	for _, s := range []string{"120", "0", "Wed, 25 Nov 2026 12:01:30 GMT", "-1", "1e9", "99999999999999999999", "Wed Nov 25 12:00:05 2026", ""} {
		f.Add(s, "")
		f.Add("", s)
	}
	f.Fuzz(func(t *testing.T, retryAfter, ms string) {
		h := http.Header{}
		if retryAfter != "" {
			h.Set("Retry-After", retryAfter)
		}
		if ms != "" {
			h.Set("Retry-After-Ms", ms)
		}
		d, ok := provider.ParseRetryAfter(h, clock())
		if d < 0 || d > provider.MaxRetryAfter {
			t.Fatalf("delay %v out of range", d)
		}
		if !ok && d != 0 {
			t.Fatalf("delay %v without ok", d)
		}
	})
}

func TestCodeForStatus(t *testing.T) {
	t.Parallel()
	const (
		invalid     = providerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT
		notFound    = providerv1.ErrorCode_ERROR_CODE_NOT_FOUND
		unavailable = providerv1.ErrorCode_ERROR_CODE_UNAVAILABLE
		internal    = providerv1.ErrorCode_ERROR_CODE_INTERNAL
	)
	tests := []struct {
		status int
		want   providerv1.ErrorCode
	}{
		{400, invalid}, {409, invalid}, {413, invalid}, {422, invalid},
		{401, internal}, {402, internal}, {403, internal},
		{404, notFound},
		{408, unavailable}, {425, unavailable}, {429, unavailable},
		{500, unavailable}, {502, unavailable}, {503, unavailable}, {504, unavailable}, {529, unavailable},
		{301, internal}, {307, internal}, {101, internal}, {600, internal},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.status), func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, provider.CodeForStatus(tt.status))
		})
	}
}

func TestHTTPError(t *testing.T) {
	t.Parallel()
	retry := http.Header{"Retry-After": {"7"}}
	tests := []struct {
		name      string
		status    int
		header    http.Header
		apiErr    provider.APIError
		wantCode  providerv1.ErrorCode
		wantRetry bool
		wantAfter time.Duration
		wantMsg   string
	}{
		{
			name: "rate limited", status: 429, header: retry, apiErr: provider.APIError{Type: "rate_limit_error"},
			wantCode: providerv1.ErrorCode_ERROR_CODE_UNAVAILABLE, wantRetry: true, wantAfter: 7 * time.Second,
			wantMsg: "openai: HTTP 429 Too Many Requests (type=rate_limit_error)",
		},
		{
			name: "out of credit", status: 429, header: retry, apiErr: provider.APIError{Type: "insufficient_quota", Code: "insufficient_quota"},
			wantCode: providerv1.ErrorCode_ERROR_CODE_INTERNAL,
			wantMsg:  "openai: HTTP 429 Too Many Requests (type=insufficient_quota code=insufficient_quota)",
		},
		{
			name: "Retry-After ignored when not retryable", status: 400, header: retry,
			wantCode: providerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, wantMsg: "openai: HTTP 400 Bad Request",
		},
		{
			name: "unauthorised", status: 401, apiErr: provider.APIError{Code: "invalid_api_key"},
			wantCode: providerv1.ErrorCode_ERROR_CODE_INTERNAL,
			wantMsg:  "openai: HTTP 401 Unauthorized: authentication failed, check the component's key (code=invalid_api_key)",
		},
		{
			name: "unknown status text", status: 599,
			wantCode: providerv1.ErrorCode_ERROR_CODE_UNAVAILABLE, wantRetry: true, wantMsg: "openai: HTTP 599",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := provider.HTTPError("openai", tt.status, tt.header, tt.apiErr, clock())
			require.Equal(t, tt.wantCode, e.Code)
			require.Equal(t, tt.wantRetry, e.Retryable())
			require.Equal(t, tt.wantAfter, e.RetryAfter)
			require.Equal(t, tt.wantMsg, e.Error())
		})
	}
}

func TestParseAPIError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		body string
		want provider.APIError
	}{
		{
			name: "openai",
			body: `{"error":{"message":"Incorrect API key provided: sk-ab***yz.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}`,
			want: provider.APIError{Type: "invalid_request_error", Code: "invalid_api_key"},
		},
		{
			name: "openai with param",
			body: `{"error":{"message":"x","type":"invalid_request_error","param":"messages[0].content","code":null}}`,
			want: provider.APIError{Type: "invalid_request_error", Param: "messages[0].content"},
		},
		{
			name: "mistral",
			body: `{"object":"error","message":"Unauthorized","type":"unauthorized","param":null,"code":"1000"}`,
			want: provider.APIError{Type: "unauthorized", Code: "1000"},
		},
		{
			name: "gemini list",
			body: `[{"error":{"code":400,"message":"API key not valid.","status":"INVALID_ARGUMENT"}}]`,
			want: provider.APIError{Code: "400", Status: "INVALID_ARGUMENT"},
		},
		{
			name: "string error",
			body: `{"error":"model 'x' not found"}`,
			want: provider.APIError{},
		},
		{
			name: "free text in identifiers is reduced",
			body: `{"error":{"type":"a b\nc<script>","code":"` + strings.Repeat("x", 100) + `"}}`,
			want: provider.APIError{Type: "abcscript", Code: strings.Repeat("x", 64)},
		},
		{name: "fastapi detail", body: `{"detail":[{"loc":["body"],"msg":"field required"}]}`},
		{name: "html", body: `<html>bad gateway</html>`},
		{name: "empty", body: ``},
		{name: "empty list", body: `[]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, provider.ParseAPIError([]byte(tt.body)))
		})
	}
}

func FuzzParseAPIError(f *testing.F) {
	for _, s := range []string{
		`{"error":{"message":"m","type":"t","param":"p","code":"c"}}`,
		`[{"error":{"code":400,"status":"INVALID_ARGUMENT"}}]`,
		`{"object":"error","type":"x","code":1.5e3}`,
		`{"error":"text"}`, `[`, `null`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		a := provider.ParseAPIError(body)
		for _, s := range []string{a.Type, a.Code, a.Param, a.Status} {
			if len(s) > 64 {
				t.Fatalf("identifier %q longer than 64", s)
			}
			if strings.ContainsAny(s, " \t\n\"'<>{}=") {
				t.Fatalf("identifier %q holds free text", s)
			}
		}
	})
}

func TestParseEndpoint(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		raw     string
		allow   []string
		want    string
		wantErr string
	}{
		{name: "https", raw: "https://api.openai.com/v1", want: "https://api.openai.com/v1"},
		{name: "trailing slash trimmed", raw: "https://generativelanguage.googleapis.com/v1beta/openai/", want: "https://generativelanguage.googleapis.com/v1beta/openai"},
		{name: "http with port", raw: "http://localhost:11434/v1", want: "http://localhost:11434/v1"},
		{name: "upper-case scheme", raw: "HTTPS://example.com", want: "https://example.com"},
		{name: "spaces trimmed", raw: "  https://example.com/v1  ", want: "https://example.com/v1"},
		{name: "ftp", raw: "ftp://example.com", wantErr: "scheme must be http or https"},
		{name: "file", raw: "file:///etc/passwd", wantErr: "scheme must be http or https"},
		{name: "no scheme", raw: "api.openai.com/v1", wantErr: "scheme must be http or https"},
		{name: "no host", raw: "https:///v1", wantErr: "no host"},
		{name: "query", raw: "https://example.com/v1?x=1", wantErr: "query and fragment are not allowed"},
		{name: "fragment", raw: "https://example.com/v1#x", wantErr: "query and fragment are not allowed"},
		{name: "credentials", raw: "https://user:hunter2@example.com", wantErr: "credentials in the URL are not allowed"},
		{name: "not a URL", raw: "https://exa mple.com:hunter2", wantErr: "not a URL"},
		{name: "allowed host", raw: "https://api.openai.com/v1", allow: []string{"api.openai.com"}, want: "https://api.openai.com/v1"},
		{name: "allowed host, any case", raw: "https://API.OpenAI.com/v1", allow: []string{"api.openai.com"}, want: "https://API.OpenAI.com/v1"},
		{name: "host not allowed", raw: "https://evil.example/v1", allow: []string{"api.openai.com"}, wantErr: "not in WORKER_ENDPOINT_ALLOWLIST"},
		{name: "wildcard", raw: "https://myres.openai.azure.com", allow: []string{"*.openai.azure.com"}, want: "https://myres.openai.azure.com"},
		{name: "wildcard is not the apex", raw: "https://openai.azure.com", allow: []string{"*.openai.azure.com"}, wantErr: "not in"},
		{name: "wildcard suffix must be a label", raw: "https://evilopenai.azure.com", allow: []string{"*.openai.azure.com"}, wantErr: "not in"},
		{name: "host:port", raw: "http://localhost:11434/v1", allow: []string{"localhost:11434"}, want: "http://localhost:11434/v1"},
		{name: "host:port, other port", raw: "http://localhost:8080/v1", allow: []string{"localhost:11434"}, wantErr: "not in"},
		{name: "host:port, default port", raw: "https://api.mistral.ai/v1", allow: []string{"api.mistral.ai:443"}, want: "https://api.mistral.ai/v1"},
		{name: "ipv6 with port", raw: "http://[::1]:8080", allow: []string{"[::1]:8080"}, want: "http://[::1]:8080"},
		{name: "ipv6 without port", raw: "http://[::1]:8080", allow: []string{"::1"}, want: "http://[::1]:8080"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			u, err := provider.ParseEndpoint(tt.raw, tt.allow)
			if tt.wantErr != "" {
				require.ErrorIs(t, err, provider.ErrEndpoint)
				require.ErrorContains(t, err, tt.wantErr)
				require.NotContains(t, err.Error(), "hunter2")
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, u.String())
		})
	}
}

func FuzzParseEndpoint(f *testing.F) {
	for _, s := range []string{"https://api.openai.com/v1", "http://[::1]:80/", "ftp://x", "https://u:p@h", "%zz", ""} {
		f.Add(s, "api.openai.com,*.azure.com")
	}
	f.Fuzz(func(t *testing.T, raw, allow string) {
		u, err := provider.ParseEndpoint(raw, provider.ParseAllowlist(allow))
		if err != nil {
			if !errors.Is(err, provider.ErrEndpoint) {
				t.Fatalf("error %v does not wrap ErrEndpoint", err)
			}
			return
		}
		if u.Scheme != "http" && u.Scheme != "https" || u.Hostname() == "" || u.User != nil || u.RawQuery != "" {
			t.Fatalf("accepted %q as %#v", raw, u)
		}
	})
}

func TestParseAllowlist(t *testing.T) {
	t.Parallel()
	require.Nil(t, provider.ParseAllowlist(""))
	require.Nil(t, provider.ParseAllowlist(" , ,"))
	require.Equal(t, []string{"api.openai.com", "*.openai.azure.com", "localhost:11434"},
		provider.ParseAllowlist(" API.openai.com, *.openai.azure.com,,localhost:11434 "))
}

func TestHostAllowed(t *testing.T) {
	t.Parallel()
	u, err := url.Parse("https://api.deepseek.com")
	require.NoError(t, err)
	require.True(t, provider.HostAllowed(u, nil))
	require.True(t, provider.HostAllowed(u, []string{"", "api.deepseek.com"}))
	require.False(t, provider.HostAllowed(u, []string{""}))
}

func TestError(t *testing.T) {
	t.Parallel()
	base := errors.New("boom")
	tests := []struct {
		name      string
		err       *provider.Error
		wantCode  providerv1.ErrorCode
		wantRetry bool
	}{
		{"invalid argument", provider.InvalidArgument(base), providerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, false},
		{"internal", provider.Internal(base), providerv1.ErrorCode_ERROR_CODE_INTERNAL, false},
		{"unavailable", provider.Unavailable(base, time.Second), providerv1.ErrorCode_ERROR_CODE_UNAVAILABLE, true},
		{"unavailable after cancel", provider.Unavailable(fmt.Errorf("x: %w", context.Canceled), 0), providerv1.ErrorCode_ERROR_CODE_UNAVAILABLE, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			wrapped := fmt.Errorf("component openai: %w", tt.err)
			require.Equal(t, tt.wantCode, tt.err.ErrorCode())
			require.Equal(t, tt.wantRetry, tt.err.Retryable())
			require.Equal(t, tt.wantRetry, provider.IsRetryable(wrapped))
			require.Equal(t, tt.err.Err.Error(), tt.err.Error())
			require.ErrorIs(t, wrapped, tt.err.Err)
			d, ok := provider.RetryAfterOf(wrapped)
			require.Equal(t, tt.err.RetryAfter, d)
			require.Equal(t, tt.err.RetryAfter > 0, ok)
		})
	}
	require.False(t, provider.IsRetryable(base))
	_, ok := provider.RetryAfterOf(base)
	require.False(t, ok)
	require.Equal(t, "ERROR_CODE_INTERNAL", (&provider.Error{Code: providerv1.ErrorCode_ERROR_CODE_INTERNAL}).Error())
}

func TestOptionsModel(t *testing.T) {
	t.Parallel()
	env := func(m map[string]string) func(string) (string, bool) {
		return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
	}
	withModel := component.Component{Metadata: map[string]string{"Model": "from-metadata"}}
	tests := []struct {
		name string
		opts provider.Options
		c    component.Component
		env  string
		want string
	}{
		{"default", provider.Options{LookupEnv: env(nil)}, component.Component{}, "OPENAI_MODEL", "def"},
		{"metadata", provider.Options{LookupEnv: env(nil)}, withModel, "OPENAI_MODEL", "from-metadata"},
		{"env wins", provider.Options{LookupEnv: env(map[string]string{"OPENAI_MODEL": "from-env"})}, withModel, "OPENAI_MODEL", "from-env"},
		{"empty env ignored", provider.Options{LookupEnv: env(map[string]string{"OPENAI_MODEL": ""})}, withModel, "OPENAI_MODEL", "from-metadata"},
		{"no env variable", provider.Options{LookupEnv: env(map[string]string{"": "x"})}, withModel, "", "from-metadata"},
		{"empty metadata ignored", provider.Options{LookupEnv: env(nil)}, component.Component{Metadata: map[string]string{"model": ""}}, "X", "def"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, tt.opts.Model(tt.c, tt.env, "def"))
		})
	}
}

func TestOptionsDefaults(t *testing.T) {
	t.Parallel()
	var o provider.Options
	require.NotNil(t, o.Log())
	require.NotNil(t, o.Clock())
	c := o.HTTPClient()
	require.Zero(t, c.Timeout)
	require.NotNil(t, c.Transport)
	require.ErrorIs(t, c.CheckRedirect(nil, nil), http.ErrUseLastResponse)
	fixed := provider.Options{Now: clock}
	require.Equal(t, clock(), fixed.Clock()())
}
