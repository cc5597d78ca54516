package openaiapi

import (
	"net/http"
	"strings"
)

// Parley's request and response headers on the OpenAI-compatible API (docs/openai.md).
const (
	// ScrubHeader asks for PII scrubbing: a comma-separated list of inputs, outputs and
	// tokenize (inputs scrubbed in tokenize mode: the provider sees numbered placeholders,
	// the caller gets its values back), or none.
	ScrubHeader = "Parley-Scrub"
	// CacheHeader on a request: "bypass" neither reads nor writes the response cache.
	// On an answer: hit, miss, or off (the component caches nothing, or the request
	// bypassed the cache).
	CacheHeader = "Parley-Cache"
	// RequestIDHeader carries the audit log's request id; X-Request-Id, which OpenAI's
	// SDKs read, carries it too.
	RequestIDHeader = "Parley-Request-Id"
)

// Metadata keys that do what the headers do, for clients that can set metadata but not
// headers. They are not forwarded to the provider.
const (
	metadataPrefix   = "parley."
	ScrubMetadataKey = metadataPrefix + "scrub"
	CacheMetadataKey = metadataPrefix + "cache"
)

// options are Parley's features a request asks for.
type options struct {
	inputs, outputs, tokenize bool
	bypassCache               bool
}

// parleyOptions reads the Parley headers and metadata keys; a header and a key add up.
func parleyOptions(hdr http.Header, md map[string]string) (options, *Error) {
	var o options
	for _, src := range []struct{ name, value string }{
		{ScrubHeader, strings.Join(hdr.Values(ScrubHeader), ",")},
		{"metadata." + ScrubMetadataKey, md[ScrubMetadataKey]},
	} {
		for _, v := range strings.Split(src.value, ",") {
			switch strings.ToLower(strings.TrimSpace(v)) {
			case "", "none":
			case "inputs":
				o.inputs = true
			case "outputs":
				o.outputs = true
			case "tokenize":
				o.tokenize = true
			default:
				return options{}, invalidParam(paramOf(src.name), "Invalid %s value '%s': use a comma-separated list of inputs, outputs and tokenize, or none.", src.name, echo(strings.TrimSpace(v)))
			}
		}
	}
	if o.tokenize {
		o.inputs = true
	}
	for _, src := range []struct{ name, value string }{
		{CacheHeader, hdr.Get(CacheHeader)},
		{"metadata." + CacheMetadataKey, md[CacheMetadataKey]},
	} {
		switch strings.ToLower(strings.TrimSpace(src.value)) {
		case "", "default":
		case "bypass":
			o.bypassCache = true
		default:
			return options{}, invalidParam(paramOf(src.name), "Invalid %s value '%s': use bypass or default.", src.name, echo(src.value))
		}
	}
	return o, nil
}

// paramOf is the param of an error about name: metadata keys are request fields,
// headers are not.
func paramOf(name string) string {
	if strings.HasPrefix(name, "metadata.") {
		return name
	}
	return ""
}
