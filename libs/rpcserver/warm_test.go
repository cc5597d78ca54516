package rpcserver

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// barrier lets n handlers through together, round after round.
type barrier struct {
	mu      sync.Mutex
	n, in   int
	release chan struct{}
}

func newBarrier(n int) *barrier { return &barrier{n: n, release: make(chan struct{})} }

func (b *barrier) wait() {
	b.mu.Lock()
	b.in++
	ch := b.release
	if b.in == b.n {
		b.in, b.release = 0, make(chan struct{})
		close(ch)
	}
	b.mu.Unlock()
	<-ch
}

// TestWarmHandlerReusesWorkers counts the goroutines the pool starts: as many as the
// requests served at once, whatever the number of rounds, up to maxIdleWorkers kept.
func TestWarmHandlerReusesWorkers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		atOnce    int
		rounds    int
		started   int
		idleAfter int
	}{
		{name: "one at a time", atOnce: 1, rounds: 50, started: 1, idleAfter: 1},
		{name: "eight at once", atOnce: 8, rounds: 10, started: 8, idleAfter: 8},
		// Two more than are kept: two workers end after each round, two start in the next.
		{name: "more than are kept", atOnce: maxIdleWorkers + 2, rounds: 3, started: maxIdleWorkers + 2*3, idleAfter: maxIdleWorkers},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := newBarrier(tt.atOnce)
			h := newWarmHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b.wait()
				_, _ = io.WriteString(w, r.URL.Path)
			}))
			for round := range tt.rounds {
				var wg sync.WaitGroup
				for i := range tt.atOnce {
					wg.Go(func() {
						path := fmt.Sprintf("/%d/%d", round, i)
						rec := httptest.NewRecorder()
						h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
						if rec.Body.String() != path {
							t.Errorf("answer %q, want %q", rec.Body.String(), path)
						}
					})
				}
				wg.Wait()
			}
			require.Equal(t, tt.started, h.pool.Started())
			require.Equal(t, tt.idleAfter, h.pool.Idle())
			h.close()
			require.Zero(t, h.pool.Idle())
		})
	}
}

// TestWarmHandlerPanicsAndGoexit: a handler's panic is raised again on the request's own
// goroutine and its worker goes on; a handler that ends its goroutine still lets its
// request return, and only its worker is replaced.
func TestWarmHandlerPanicsAndGoexit(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	tests := []struct {
		name    string
		handler func()
		panics  any
		started int // after the failing request and one good one
	}{
		{name: "panic", handler: func() { panic(boom) }, panics: boom, started: 1},
		{name: "abort", handler: func() { panic(http.ErrAbortHandler) }, panics: http.ErrAbortHandler, started: 1},
		{name: "goexit", handler: runtime.Goexit, started: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newWarmHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/fail" {
					tt.handler()
				}
				_, _ = io.WriteString(w, "ok")
			}))
			serve := func(path string) *httptest.ResponseRecorder {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
				return rec
			}
			if tt.panics != nil {
				require.PanicsWithValue(t, tt.panics, func() { serve("/fail") })
			} else {
				require.NotPanics(t, func() { serve("/fail") })
			}
			require.Equal(t, "ok", serve("/good").Body.String())
			require.Equal(t, tt.started, h.pool.Started())
		})
	}
}

// TestWarmHandlerOverHTTP2 serves real HTTP/2 requests, each on a goroutine net/http
// starts for it, through one worker; a panicking request fails alone.
func TestWarmHandlerOverHTTP2(t *testing.T) {
	t.Parallel()
	h := newWarmHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/abort" {
			panic(http.ErrAbortHandler)
		}
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Proto", r.Proto)
		_, _ = w.Write(body)
	}))
	srv := httptest.NewUnstartedServer(h)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	t.Cleanup(h.close)
	client := srv.Client()
	for i := range 40 {
		path := "/echo"
		if i == 20 {
			path = "/abort"
		}
		want := fmt.Sprintf("request %d", i)
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+path, strings.NewReader(want))
		require.NoError(t, err)
		res, err := client.Do(req)
		if path == "/abort" {
			if err == nil {
				_, err = io.ReadAll(res.Body)
				_ = res.Body.Close()
			}
			require.Error(t, err, "an aborted answer")
			continue
		}
		require.NoError(t, err)
		got, err := io.ReadAll(res.Body)
		_ = res.Body.Close()
		require.NoError(t, err)
		require.Equal(t, "HTTP/2.0", res.Header.Get("Proto"))
		require.Equal(t, want, string(got))
	}
	require.Equal(t, 1, h.pool.Started())
}
