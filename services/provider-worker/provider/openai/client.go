package openai

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/services/provider-worker/provider"
)

// Dialect selects how one OpenAI-compatible API differs from OpenAI's own.
type Dialect struct {
	// MaxCompletionTokens sends the token cap as max_completion_tokens (OpenAI, Azure;
	// reasoning models reject max_tokens) instead of max_tokens.
	MaxCompletionTokens bool
	// DeveloperRole sends developer messages with the developer role (OpenAI, Azure)
	// instead of system.
	DeveloperRole bool
	// TextPartsAsArray sends a message of several text parts as an array of
	// {"type":"text"} parts instead of the texts joined by "\n".
	TextPartsAsArray bool
	// ForwardMetadata sends the request metadata as the metadata object, with
	// prompt_cache_retention added (Dapr 1.17+ does so for its langchaingo OpenAI client).
	ForwardMetadata bool
	// ToolCallsAsText sends assistant tool calls as text and tool results as user
	// messages, Dapr's workaround for Mistral.
	ToolCallsAsText bool
	// NoStreamOptions leaves stream_options out of streamed requests (Mistral, which
	// rejects it and sends the usage on its last chunk anyway).
	NoStreamOptions bool
}

// OpenAIDialect is the dialect of OpenAI and Azure OpenAI.
func OpenAIDialect() Dialect {
	return Dialect{MaxCompletionTokens: true, DeveloperRole: true, TextPartsAsArray: true, ForwardMetadata: true}
}

// CompatDialect is the dialect of the OpenAI-compatible endpoints of other providers
// (DeepSeek, Gemini, Hugging Face, Ollama): max_tokens, no developer role, string content,
// metadata forwarded as Dapr forwards it.
func CompatDialect() Dialect {
	return Dialect{ForwardMetadata: true}
}

// Config describes one chat completions API and how to call it.
type Config struct {
	// Name names the provider in errors, e.g. "openai" or "mistral".
	Name string
	// URL is the full chat completions URL, including any query (Azure's api-version).
	URL *url.URL
	// AuthHeader carries the key: "Authorization" (sent as "Bearer <key>") or "api-key"
	// (Azure; sent as is).
	AuthHeader string
	// Key is the provider key; it is never logged and never part of an error.
	Key string
	// Model is sent with every request and reported when the answer names none.
	Model string
	// DefaultMaxTokens caps the answer when the request sets no max_tokens; 0 means none.
	DefaultMaxTokens int64
	// Dialect selects the wire differences.
	Dialect Dialect
}

// Client calls one chat completions API. It is safe for concurrent use.
type Client struct {
	name             string
	url              string
	authHeader       string
	authValue        string
	key              string
	model            string
	defaultMaxTokens int64
	dialect          Dialect
	http             *http.Client
	now              func() time.Time
	log              *slog.Logger
}

// Body size limits: an answer larger than maxResponseBody is refused (the NATS reply to
// the router is capped at 1 MB by default anyway); error bodies are read only as far as
// their identifiers are needed.
const (
	maxResponseBody = 32 << 20
	maxErrorBody    = 64 << 10
)

// minSecretKey is the shortest key redact looks for.
const minSecretKey = 8

// userAgent identifies Parley to providers.
const userAgent = "parley-provider-worker"

// NewClient returns a client for cfg, with HTTP, clock and logger from opts. The URL must
// already be validated (provider.ParseEndpoint).
func NewClient(cfg Config, opts provider.Options) (*Client, error) {
	if cfg.URL == nil {
		return nil, fmt.Errorf("%s: no URL", cfg.Name)
	}
	if cfg.Model == "" {
		return nil, fmt.Errorf("%s: no model", cfg.Name)
	}
	c := &Client{
		name:             cfg.Name,
		url:              cfg.URL.String(),
		authHeader:       cfg.AuthHeader,
		key:              cfg.Key,
		model:            cfg.Model,
		defaultMaxTokens: cfg.DefaultMaxTokens,
		dialect:          cfg.Dialect,
		http:             opts.HTTPClient(),
		now:              opts.Clock(),
		log:              opts.Log(),
	}
	switch {
	case cfg.Key == "":
	case strings.EqualFold(cfg.AuthHeader, "Authorization"):
		c.authValue = "Bearer " + cfg.Key
	case cfg.AuthHeader != "":
		c.authValue = cfg.Key
	default:
		return nil, fmt.Errorf("%s: no header for the key", cfg.Name)
	}
	return c, nil
}

// Model returns the model the client sends.
func (c *Client) Model() string { return c.model }

// String describes the client without its key.
func (c *Client) String() string {
	return fmt.Sprintf("%s chat completions client (POST %s, model %s)", c.name, c.url, c.model)
}

// GoString describes the client without its key, for %#v.
func (c *Client) GoString() string { return c.String() }

// LogValue describes the client without its key, for slog.
func (c *Client) LogValue() slog.Value {
	return slog.GroupValue(slog.String("provider", c.name), slog.String("url", c.url), slog.String("model", c.model))
}

// CloseIdleConnections closes the idle connections of the client's transport.
func (c *Client) CloseIdleConnections() { c.http.CloseIdleConnections() }

// Converse sends req to the chat completions API and returns its answer. Its context's
// deadline bounds the whole call, body included. Failures are *provider.Error values:
// INVALID_ARGUMENT for a request that cannot be sent or that the provider rejects,
// NOT_FOUND for an unknown model or path, UNAVAILABLE (with the provider's Retry-After)
// for rate limits, overload, timeouts, network failures and unreadable answers, INTERNAL
// for authentication and billing failures. No error message holds the key or any text
// of the conversation.
func (c *Client) Converse(ctx context.Context, req *providerv1.Request) (*providerv1.Response, error) {
	resp, err := c.converse(ctx, req)
	if err != nil {
		return nil, c.redact(err)
	}
	return resp, nil
}

func (c *Client) converse(ctx context.Context, req *providerv1.Request) (*providerv1.Response, error) {
	body, err := c.encode(ctx, req)
	if err != nil {
		return nil, err
	}
	data, err := c.post(ctx, body)
	if err != nil {
		return nil, err
	}
	resp, err := decodeResponse(data, c.model)
	if err != nil {
		return nil, provider.Unavailable(fmt.Errorf("%s: decode response: %w", c.name, err), 0)
	}
	if err := checkRequiredToolUse(req, resp); err != nil {
		return nil, provider.Unavailable(fmt.Errorf("%s: %w", c.name, err), 0)
	}
	return resp, nil
}

// encode returns the JSON body for req.
func (c *Client) encode(ctx context.Context, req *providerv1.Request) ([]byte, error) {
	cr, err := c.buildRequest(req, func(err error) {
		c.log.WarnContext(ctx, "response_format ignored: not convertible to a json_schema",
			"provider", c.name, "request_id", req.GetRequestId(), "err", err)
	})
	if err != nil {
		return nil, err
	}
	body, err := json.Marshal(cr)
	if err != nil {
		// Only non-finite numbers in tool parameters can fail here.
		return nil, provider.InvalidArgument(fmt.Errorf("%s: encode request: %w", c.name, err))
	}
	return body, nil
}

// send posts body, asking for accept, and returns the successful response, whose body
// the caller closes, or the classified failure.
func (c *Client) send(ctx context.Context, body []byte, accept string) (*http.Response, error) {
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return nil, provider.Internal(fmt.Errorf("%s: build request: %w", c.name, err))
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("Accept", accept)
	hr.Header.Set("User-Agent", userAgent)
	if c.authValue != "" {
		hr.Header.Set(c.authHeader, c.authValue)
	}
	res, err := c.http.Do(hr)
	if err != nil {
		return nil, c.callError(ctx, "send request", err)
	}
	if res.StatusCode < 200 || res.StatusCode > 299 {
		defer func() { _ = res.Body.Close() }()
		// A body cut short still leaves the status to classify by.
		data, _ := io.ReadAll(io.LimitReader(res.Body, maxErrorBody))
		return nil, provider.HTTPError(c.name, res.StatusCode, res.Header, provider.ParseAPIError(data), c.now())
	}
	return res, nil
}

// post sends body and returns the answer's body, or the classified failure.
func (c *Client) post(ctx context.Context, body []byte) ([]byte, error) {
	res, err := c.send(ctx, body, "application/json")
	if err != nil {
		return nil, err
	}
	defer func() { _ = res.Body.Close() }()
	data, err := io.ReadAll(io.LimitReader(res.Body, maxResponseBody+1))
	if err != nil {
		return nil, c.callError(ctx, "read response", err)
	}
	if len(data) > maxResponseBody {
		return nil, provider.Internal(fmt.Errorf("%s: response exceeds %d bytes", c.name, maxResponseBody))
	}
	return data, nil
}

// callError classifies a failure to send or read: the context's end or a network failure,
// both UNAVAILABLE (another attempt, with a fresh deadline, may work; Retryable is false
// once the caller cancelled).
func (c *Client) callError(ctx context.Context, op string, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return provider.Unavailable(fmt.Errorf("%s: %s: %w", c.name, op, ctxErr), 0)
	}
	return provider.Unavailable(fmt.Errorf("%s: %s: %w", c.name, op, err), 0)
}

// redact is the last line of defence: an error whose text holds the key (a transport
// error quoting a header, say) is replaced by one that does not, keeping its code.
// Keys shorter than minSecretKey (placeholders such as Ollama's "ollama") are not
// redacted: they would match ordinary words of the message.
func (c *Client) redact(err error) error {
	if len(c.key) < minSecretKey || !strings.Contains(err.Error(), c.key) {
		return err
	}
	msg := strings.ReplaceAll(err.Error(), c.key, "[REDACTED]")
	var pe *provider.Error
	if errors.As(err, &pe) {
		return &provider.Error{Code: pe.Code, RetryAfter: pe.RetryAfter, Err: errors.New(msg)}
	}
	return provider.Internal(errors.New(msg))
}

// checkRequiredToolUse reproduces Dapr's guard (contrib 1.17.8+): with tool_choice
// required (or any) and tools present, an answer with neither content nor tool calls is a
// retryable failure rather than an empty success.
func checkRequiredToolUse(req *providerv1.Request, resp *providerv1.Response) error {
	tc := req.GetToolChoice()
	if (tc != toolChoiceRequired && tc != toolChoiceAny) || len(req.GetTools()) == 0 {
		return nil
	}
	for _, ch := range resp.GetChoices() {
		if ch.GetContent() != "" || len(ch.GetToolCalls()) > 0 {
			return nil
		}
	}
	return fmt.Errorf("LLM returned empty response with no tool calls despite %d tools being available", len(req.GetTools()))
}
