package integration_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// httpResult is a plain HTTP exchange.
type httpResult struct {
	status int
	header http.Header
	body   string
}

func do(t *testing.T, method, path, body string) httpResult {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, st.URL("router")+path, bytes.NewBufferString(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer func() { _ = res.Body.Close() }()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return httpResult{status: res.StatusCode, header: res.Header, body: string(b)}
}

func post(t *testing.T, path, body string) httpResult {
	t.Helper()
	return do(t, http.MethodPost, path, body)
}

// nonce makes a request unique, so cache entries of other tests never answer it.
func nonce(t *testing.T) string {
	t.Helper()
	var b [6]byte
	_, err := rand.Read(b[:])
	require.NoError(t, err)
	return "n" + hex.EncodeToString(b[:])
}

// h2cClient speaks HTTP/2 without TLS, as gRPC needs.
func h2cClient() *http.Client {
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: p}}
}

// get fetches an absolute URL without a client certificate (as a probe or a scraper),
// trusting the suite's development CA.
func get(t *testing.T, url string) httpResult {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	require.NoError(t, err)
	res, err := clientAs(t, "").Do(req)
	require.NoError(t, err)
	defer func() { _ = res.Body.Close() }()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return httpResult{status: res.StatusCode, header: res.Header, body: string(b)}
}

// clientAs is an HTTP client presenting identity as's certificate from the suite's
// development CA (none when as is empty); stacks of single tests share that CA.
func clientAs(t *testing.T, as string) *http.Client {
	t.Helper()
	c, err := st.Client(as)
	require.NoError(t, err)
	t.Cleanup(c.CloseIdleConnections)
	return c
}

var (
	scrapeOnce   sync.Once
	scrapeShared *http.Client
)

// scrapeClient is a client without a certificate that trusts the suite's CA (every
// stack of the suite shares it), for /metrics of internal services.
func scrapeClient() *http.Client {
	scrapeOnce.Do(func() {
		c, err := st.Client("")
		if err != nil {
			c = http.DefaultClient // the scrape then fails with the TLS error, naming the cause
		}
		scrapeShared = c
	})
	return scrapeShared
}

func contextWithTimeout(t *testing.T, d time.Duration) (context.Context, context.CancelFunc) {
	t.Helper()
	return context.WithTimeout(t.Context(), d)
}
