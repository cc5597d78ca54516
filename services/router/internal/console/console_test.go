package console

import (
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/require"
)

func testFS() fstest.MapFS {
	return fstest.MapFS{
		"dist/index.html":           {Data: []byte(`<!doctype html><script type="module" src="assets/main-ABC.js"></script>` + strings.Repeat(" ", 200))},
		"dist/assets/main-ABC.js":   {Data: []byte(strings.Repeat("console.log(1);", 100))},
		"dist/assets/main-DEF.css":  {Data: []byte("body{}")},
		"dist/assets/not-hashed.js": {Data: []byte("x")},
	}
}

// TestServe: pages fall back to index.html and are revalidated; hashed assets are immutable;
// a missing file is a 404, never the page; every answer carries the security headers.
func TestServe(t *testing.T) {
	t.Parallel()
	h, err := newHandler(testFS())
	require.NoError(t, err)
	tests := []struct {
		name, method, path, encoding string
		wantCode                     int
		wantType, wantCache, wantLoc string
		wantBody                     string
		wantGzip                     bool
	}{
		{name: "root", method: "GET", path: "/console/", wantCode: 200, wantType: "text/html; charset=utf-8", wantCache: "no-cache", wantBody: "<!doctype html>"},
		{name: "page path", method: "GET", path: "/console/conversations/abc", wantCode: 200, wantType: "text/html; charset=utf-8", wantCache: "no-cache", wantBody: "<!doctype html>"},
		{name: "no slash", method: "GET", path: "/console", wantCode: 301, wantLoc: "/console/"},
		{name: "asset", method: "GET", path: "/console/assets/main-ABC.js", wantCode: 200, wantType: "text/javascript; charset=utf-8", wantCache: "public, max-age=31536000, immutable", wantBody: "console.log(1);"},
		{name: "asset gzip", method: "GET", path: "/console/assets/main-ABC.js", encoding: "br, gzip", wantCode: 200, wantType: "text/javascript; charset=utf-8", wantCache: "public, max-age=31536000, immutable", wantBody: "console.log(1);", wantGzip: true},
		{name: "gzip refused", method: "GET", path: "/console/assets/main-ABC.js", encoding: "gzip;q=0", wantCode: 200, wantType: "text/javascript; charset=utf-8", wantCache: "public, max-age=31536000, immutable", wantBody: "console.log(1);"},
		{name: "css", method: "GET", path: "/console/assets/main-DEF.css", wantCode: 200, wantType: "text/css; charset=utf-8", wantCache: "public, max-age=31536000, immutable", wantBody: "body{}"},
		{name: "missing asset", method: "GET", path: "/console/assets/gone-XYZ.js", wantCode: 404, wantCache: "no-store"},
		{name: "index by name outside assets", method: "GET", path: "/console/index.html", wantCode: 404, wantCache: "no-store"},
		{name: "head", method: "HEAD", path: "/console/", wantCode: 200, wantType: "text/html; charset=utf-8", wantCache: "no-cache"},
		{name: "post", method: "POST", path: "/console/", wantCode: 405},
		{name: "outside", method: "GET", path: "/other", wantCode: 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req := httptest.NewRequest(tt.method, tt.path, nil)
			if tt.encoding != "" {
				req.Header.Set("Accept-Encoding", tt.encoding)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			res := rec.Result()
			require.Equal(t, tt.wantCode, res.StatusCode)
			require.Equal(t, Policy, res.Header.Get("Content-Security-Policy"))
			require.Equal(t, "nosniff", res.Header.Get("X-Content-Type-Options"))
			require.Equal(t, "DENY", res.Header.Get("X-Frame-Options"))
			if tt.wantType != "" {
				require.Equal(t, tt.wantType, res.Header.Get("Content-Type"))
			}
			require.Equal(t, tt.wantCache, res.Header.Get("Cache-Control"))
			require.Equal(t, tt.wantLoc, res.Header.Get("Location"))
			body := res.Body
			if tt.wantGzip {
				require.Equal(t, "gzip", res.Header.Get("Content-Encoding"))
				zr, err := gzip.NewReader(body)
				require.NoError(t, err)
				body = zr
			} else {
				require.Empty(t, res.Header.Get("Content-Encoding"))
			}
			b, err := io.ReadAll(body)
			require.NoError(t, err)
			require.Contains(t, string(b), tt.wantBody)
			if tt.method == http.MethodHead {
				require.Empty(t, b)
			}
		})
	}
}

// TestNotModified: the ETag revalidates the page without a body.
func TestNotModified(t *testing.T) {
	t.Parallel()
	h, err := newHandler(testFS())
	require.NoError(t, err)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/console/", nil))
	etag := rec.Result().Header.Get("ETag")
	require.NotEmpty(t, etag)
	req := httptest.NewRequest(http.MethodGet, "/console/usage", nil)
	req.Header.Set("If-None-Match", etag)
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	require.Equal(t, http.StatusNotModified, rec.Code)
	require.Empty(t, rec.Body.Bytes())
}

// TestEmbeddedBuild: the committed build loads, and its page names only files it holds
// (scripts and styles from the router, nothing from elsewhere).
func TestEmbeddedBuild(t *testing.T) {
	t.Parallel()
	h, err := New()
	require.NoError(t, err)
	page := string(h.index.body)
	for _, attr := range []string{`src="`, `href="`} {
		for rest := page; ; {
			i := strings.Index(rest, attr)
			if i < 0 {
				break
			}
			rest = rest[i+len(attr):]
			ref := rest[:strings.IndexByte(rest, '"')]
			if ref == "/console/" || strings.HasPrefix(ref, "data:") {
				continue
			}
			require.NotContains(t, ref, "//", "external reference %q", ref)
			require.Contains(t, h.assets, ref, "the page names %q, which the build lacks", ref)
		}
	}
	require.Contains(t, page, `<script type="module" src="assets/main-`)
}

// TestNoIndex: a build without index.html is refused at start.
func TestNoIndex(t *testing.T) {
	t.Parallel()
	_, err := newHandler(fstest.MapFS{"dist/assets/a.js": {Data: []byte("x")}})
	require.ErrorContains(t, err, "no index.html")
}

// FuzzServe: any path and Accept-Encoding get an answer with the policy, never a panic, and
// a path naming a file is never answered with the page.
func FuzzServe(f *testing.F) {
	h, err := newHandler(testFS())
	require.NoError(f, err)
	for _, seed := range []struct{ path, enc string }{
		{"/console/", "gzip"}, {"/console/assets/main-ABC.js", "gzip;q=0, br"}, {"/console/../etc/passwd", ""},
		{"/console/a.b/c", "identity"}, {"/console", "*"}, {"/console/assets/", "GZIP;q=0.5"},
	} {
		f.Add(seed.path, seed.enc)
	}
	f.Fuzz(func(t *testing.T, p, enc string) {
		req := &http.Request{Method: http.MethodGet, URL: &url.URL{Path: p}, Header: http.Header{"Accept-Encoding": {enc}}}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		require.Equal(t, Policy, rec.Header().Get("Content-Security-Policy"))
		rel, under := strings.CutPrefix(p, Prefix)
		if rec.Code == http.StatusOK && path.Ext(rel) != "" {
			require.True(t, under && strings.HasPrefix(rel, "assets/"), "%q served as a file", p)
		}
	})
}
