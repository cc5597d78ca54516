// Package console serves the web console's built assets under /console/: the single page
// (index.html) for every page path, the content-hashed scripts and styles under assets/.
// The pages hold no data: every figure comes from the API the page calls with the token the
// user typed, so the API's authentication guards the console's data.
package console

import (
	"bytes"
	"compress/gzip"
	"embed"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strconv"
	"strings"
)

// Prefix is where the console is mounted.
const Prefix = "/console/"

// dist is the console's committed build (`make console` rebuilds it from web/).
//
//go:embed dist
var dist embed.FS

// Policy is the console's Content-Security-Policy: scripts, styles, fonts and images from the
// router only, API calls to the router only, no frames, no plugins, no inline code.
const Policy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; " +
	"connect-src 'self'; manifest-src 'self'; base-uri 'self'; form-action 'none'; frame-ancestors 'none'"

// asset is one file, kept in memory with its gzip form when that is smaller.
type asset struct {
	body, gz    []byte
	contentType string
	etag        string
}

// Handler serves the console.
type Handler struct {
	index  *asset
	assets map[string]*asset // by path under dist/, e.g. assets/main-X.js
}

// New loads the embedded build.
func New() (*Handler, error) { return newHandler(dist) }

func newHandler(fsys fs.FS) (*Handler, error) {
	h := &Handler{assets: map[string]*asset{}}
	err := fs.WalkDir(fsys, "dist", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		a, err := newAsset(p, b)
		if err != nil {
			return err
		}
		h.assets[strings.TrimPrefix(p, "dist/")] = a
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("console assets: %w", err)
	}
	if h.index = h.assets["index.html"]; h.index == nil {
		return nil, fmt.Errorf("console assets: no index.html (run make console)")
	}
	return h, nil
}

func newAsset(name string, b []byte) (*asset, error) {
	ct := mime.TypeByExtension(path.Ext(name))
	if ct == "" {
		ct = "application/octet-stream"
	}
	a := &asset{body: b, contentType: ct, etag: fmt.Sprintf(`"%x-%d"`, hash(b), len(b))}
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(b); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	if buf.Len() < len(b) {
		a.gz = buf.Bytes()
	}
	return a, nil
}

// hash is FNV-1a 64: enough to tell builds apart in an ETag.
func hash(b []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return h
}

// ServeHTTP serves GET and HEAD under Prefix. /console redirects to /console/.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", Policy)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Cross-Origin-Opener-Policy", "same-origin")
	hd.Set("Cross-Origin-Resource-Policy", "same-origin")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hd.Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if r.URL.Path+"/" == Prefix {
		http.Redirect(w, r, Prefix, http.StatusMovedPermanently)
		return
	}
	rel, ok := strings.CutPrefix(r.URL.Path, Prefix)
	if !ok {
		http.NotFound(w, r)
		return
	}
	if a := h.assets[rel]; a != nil && strings.HasPrefix(rel, "assets/") {
		// Content-hashed names: a new build has new names, so these never change.
		hd.Set("Cache-Control", "public, max-age=31536000, immutable")
		h.write(w, r, a)
		return
	}
	if path.Ext(rel) != "" {
		// A file that is not there: no page fallback, or a missing script would be HTML.
		hd.Set("Cache-Control", "no-store")
		http.NotFound(w, r)
		return
	}
	// Any page path is the single page, which routes in the browser. Revalidated on every
	// load, so a new router's console is picked up at once.
	hd.Set("Cache-Control", "no-cache")
	h.write(w, r, h.index)
}

func (h *Handler) write(w http.ResponseWriter, r *http.Request, a *asset) {
	hd := w.Header()
	hd.Set("Content-Type", a.contentType)
	hd.Set("ETag", a.etag)
	hd.Add("Vary", "Accept-Encoding")
	if match := r.Header.Get("If-None-Match"); match != "" && match == a.etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	body := a.body
	if a.gz != nil && acceptsGzip(r.Header.Get("Accept-Encoding")) {
		hd.Set("Content-Encoding", "gzip")
		body = a.gz
	}
	hd.Set("Content-Length", strconv.Itoa(len(body)))
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(body)
}

// acceptsGzip reads Accept-Encoding: gzip listed and not refused with q=0.
func acceptsGzip(v string) bool {
	for _, part := range strings.Split(v, ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if !strings.EqualFold(strings.TrimSpace(name), "gzip") {
			continue
		}
		q := strings.ReplaceAll(strings.TrimSpace(params), " ", "")
		return q != "q=0" && q != "q=0.0" && q != "q=0.00" && q != "q=0.000"
	}
	return false
}
