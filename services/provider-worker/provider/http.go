package provider

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
)

// MaxRetryAfter caps a Retry-After hint; larger (or overflowing) values are clamped to it.
const MaxRetryAfter = 24 * time.Hour

// ParseRetryAfter returns the delay a provider asked for in h, relative to now. It reads,
// in order: retry-after-ms (OpenAI; milliseconds, may be fractional), x-ms-retry-after-ms
// (Azure), and Retry-After as delay-seconds or an HTTP-date (RFC 9110 §10.2.3). A date in
// the past gives 0. ok is false when no header holds a usable value.
func ParseRetryAfter(h http.Header, now time.Time) (d time.Duration, ok bool) {
	for _, name := range []string{"Retry-After-Ms", "X-Ms-Retry-After-Ms"} {
		if d, ok := parseMillis(h.Get(name)); ok {
			return d, true
		}
	}
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0, false
	}
	if isDigits(v) {
		secs, err := strconv.ParseUint(v, 10, 64)
		if err != nil || secs > uint64(MaxRetryAfter/time.Second) {
			return MaxRetryAfter, true // only overflow fails for digits
		}
		return time.Duration(secs) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return clampDelay(t.Sub(now)), true
}

func parseMillis(v string) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	ms, err := strconv.ParseFloat(v, 64)
	if err != nil || math.IsNaN(ms) || ms < 0 {
		return 0, false
	}
	if ms >= float64(MaxRetryAfter/time.Millisecond) {
		return MaxRetryAfter, true
	}
	return time.Duration(ms * float64(time.Millisecond)), true
}

func clampDelay(d time.Duration) time.Duration {
	switch {
	case d < 0:
		return 0
	case d > MaxRetryAfter:
		return MaxRetryAfter
	default:
		return d
	}
}

func isDigits(s string) bool {
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// CodeForStatus classifies an HTTP status of a provider's answer:
//
//   - 400, 422 and other 4xx not listed below: INVALID_ARGUMENT (the request cannot
//     succeed as sent);
//   - 401, 403 (bad or unauthorised key) and 402 (billing): INTERNAL, not retryable and
//     not the caller's fault; the worker logs INTERNAL failures at error level;
//   - 404 (unknown model, deployment or path): NOT_FOUND;
//   - 408, 425, 429 and 5xx (including 529 overloaded): UNAVAILABLE, retryable;
//   - anything else (1xx, 3xx: redirects are never followed): INTERNAL.
func CodeForStatus(status int) providerv1.ErrorCode {
	switch {
	case status == http.StatusUnauthorized, status == http.StatusForbidden, status == http.StatusPaymentRequired:
		return providerv1.ErrorCode_ERROR_CODE_INTERNAL
	case status == http.StatusNotFound:
		return providerv1.ErrorCode_ERROR_CODE_NOT_FOUND
	case status == http.StatusRequestTimeout, status == http.StatusTooEarly, status == http.StatusTooManyRequests,
		status >= 500 && status <= 599:
		return providerv1.ErrorCode_ERROR_CODE_UNAVAILABLE
	case status >= 400 && status <= 499:
		return providerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT
	default:
		return providerv1.ErrorCode_ERROR_CODE_INTERNAL
	}
}

// APIError is what a provider's error body says, reduced to short identifiers. The free
// text message is deliberately dropped: providers echo masked keys ("Incorrect API key
// provided: sk-ab***yz") and, in validation errors, parts of the request into it.
type APIError struct {
	// Type is the error type, e.g. invalid_request_error or rate_limit_error.
	Type string
	// Code is the machine code, e.g. context_length_exceeded or insufficient_quota.
	Code string
	// Param names the offending request field, e.g. messages or tools[0].function.name.
	Param string
	// Status is a gRPC-style status name (Gemini), e.g. INVALID_ARGUMENT.
	Status string
}

// String renders the non-empty identifiers as "type=… code=… param=… status=…".
func (a APIError) String() string {
	var b strings.Builder
	for _, kv := range [...][2]string{{"type", a.Type}, {"code", a.Code}, {"param", a.Param}, {"status", a.Status}} {
		if kv[1] == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(kv[0])
		b.WriteByte('=')
		b.WriteString(kv[1])
	}
	return b.String()
}

// quotaExhausted reports a 429 that no retry fixes: the account is out of credit.
func (a APIError) quotaExhausted() bool {
	return a.Code == "insufficient_quota" || a.Type == "insufficient_quota"
}

// errorFields are the identifier fields of an OpenAI-style error object; Mistral and
// FastAPI put them at the top level, OpenAI and Gemini under "error".
type errorFields struct {
	Type   json.RawMessage `json:"type"`
	Code   json.RawMessage `json:"code"`
	Param  json.RawMessage `json:"param"`
	Status json.RawMessage `json:"status"`
}

type errorBody struct {
	errorFields
	Error json.RawMessage `json:"error"`
}

// ParseAPIError extracts the identifiers of a provider's error body. It understands
// OpenAI's {"error":{...}}, Mistral's top-level {"type","code",...}, and Gemini's
// [{"error":{...}}]; anything else gives the zero APIError.
func ParseAPIError(body []byte) APIError {
	body = bytes.TrimSpace(body)
	if len(body) > 0 && body[0] == '[' {
		var list []json.RawMessage
		if json.Unmarshal(body, &list) != nil || len(list) == 0 {
			return APIError{}
		}
		body = list[0]
	}
	var eb errorBody
	if json.Unmarshal(body, &eb) != nil {
		return APIError{}
	}
	fields := eb.errorFields
	if inner := bytes.TrimSpace(eb.Error); len(inner) > 0 && inner[0] == '{' {
		var f errorFields
		if json.Unmarshal(inner, &f) == nil {
			fields = f
		}
	}
	return APIError{
		Type:   identifier(fields.Type),
		Code:   identifier(fields.Code),
		Param:  identifier(fields.Param),
		Status: identifier(fields.Status),
	}
}

// maxIdentifier bounds each identifier kept from an error body.
const maxIdentifier = 64

// identifier renders a JSON string or number as a short token of [A-Za-z0-9_.:/[\]-];
// other characters are dropped, so free text cannot slip through.
func identifier(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return ""
	}
	var s string
	if raw[0] == '"' {
		if json.Unmarshal(raw, &s) != nil {
			return ""
		}
	} else {
		var n json.Number
		if json.Unmarshal(raw, &n) != nil {
			return ""
		}
		s = n.String()
	}
	var b strings.Builder
	for _, r := range s {
		if b.Len() >= maxIdentifier {
			break
		}
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9',
			r == '_', r == '.', r == ':', r == '/', r == '[', r == ']', r == '-':
			b.WriteRune(r)
		}
	}
	return b.String()
}

// HTTPError classifies a non-2xx answer of the provider called name (see CodeForStatus)
// and reads its Retry-After hint when the code is UNAVAILABLE. An out-of-credit 429
// (insufficient_quota) is INTERNAL: retrying cannot help. The message holds the status
// and the body's identifiers only.
func HTTPError(name string, status int, h http.Header, apiErr APIError, now time.Time) *Error {
	code := CodeForStatus(status)
	if status == http.StatusTooManyRequests && apiErr.quotaExhausted() {
		code = providerv1.ErrorCode_ERROR_CODE_INTERNAL
	}
	msg := fmt.Sprintf("%s: HTTP %d", name, status)
	if text := http.StatusText(status); text != "" {
		msg += " " + text
	}
	if status == http.StatusUnauthorized || status == http.StatusForbidden {
		msg += ": authentication failed, check the component's key"
	}
	if s := apiErr.String(); s != "" {
		msg += " (" + s + ")"
	}
	e := &Error{Code: code, Err: errors.New(msg), Status: status}
	if code == providerv1.ErrorCode_ERROR_CODE_UNAVAILABLE {
		if d, ok := ParseRetryAfter(h, now); ok {
			e.RetryAfter = d
		}
	}
	return e
}
