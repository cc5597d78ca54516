package provider

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// ErrEndpoint marks an endpoint that a component may not use.
var ErrEndpoint = errors.New("invalid endpoint")

// ParseEndpoint validates a provider base URL: the scheme must be http or https, the host
// must be set, and user info, query and fragment are refused (credentials do not belong in
// a URL that ends up in error messages; providers add their own query). When allow is not
// empty the host must match it (see HostAllowed). A trailing "/" is trimmed from the path.
// Errors wrap ErrEndpoint and never echo a URL that holds credentials.
func ParseEndpoint(raw string, allow []string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		// url.Parse's errors quote the URL or parts of it, which may hold a password.
		return nil, fmt.Errorf("%w: not a URL", ErrEndpoint)
	}
	if u.User != nil {
		return nil, fmt.Errorf("%w: %s: credentials in the URL are not allowed, use the key metadata", ErrEndpoint, u.Redacted())
	}
	switch u.Scheme {
	case "http", "https":
	default:
		return nil, fmt.Errorf("%w: %q: scheme must be http or https", ErrEndpoint, u.Redacted())
	}
	if u.Hostname() == "" {
		return nil, fmt.Errorf("%w: %q: no host", ErrEndpoint, u.Redacted())
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return nil, fmt.Errorf("%w: %q: query and fragment are not allowed", ErrEndpoint, u.Redacted())
	}
	if !HostAllowed(u, allow) {
		return nil, fmt.Errorf("%w: host %q is not in WORKER_ENDPOINT_ALLOWLIST", ErrEndpoint, u.Host)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

// HostAllowed reports whether u's host matches an entry of allow; an empty allow-list
// allows every host. Entries take three forms, compared case-insensitively:
// "host" (any port), "host:port" (that port only; the scheme's default port when u has
// none) and "*.domain" (any host below domain, any port). IPv6 hosts are written in
// brackets when a port is given ("[::1]:8080").
func HostAllowed(u *url.URL, allow []string) bool {
	if len(allow) == 0 {
		return true
	}
	host := strings.ToLower(u.Hostname())
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	for _, entry := range allow {
		entry = strings.ToLower(strings.TrimSpace(entry))
		switch {
		case entry == "":
		case strings.HasPrefix(entry, "*."):
			if strings.HasSuffix(host, entry[1:]) {
				return true
			}
		default:
			if h, p, err := net.SplitHostPort(entry); err == nil {
				if h == host && p == port {
					return true
				}
				continue
			}
			if strings.Trim(entry, "[]") == host {
				return true
			}
		}
	}
	return false
}

// ParseAllowlist splits a comma-separated list of hosts (WORKER_ENDPOINT_ALLOWLIST),
// trimming spaces and dropping empty entries. The result is nil for an empty list.
func ParseAllowlist(s string) []string {
	var out []string
	for entry := range strings.SplitSeq(s, ",") {
		if e := strings.ToLower(strings.TrimSpace(entry)); e != "" {
			out = append(out, e)
		}
	}
	return out
}
