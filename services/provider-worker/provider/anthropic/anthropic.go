// Package anthropic implements the conversation.anthropic component against Anthropic's
// Messages API (POST {endpoint}/messages), for the public API and for Claude models on
// Microsoft Foundry (apiType: foundry).
//
// It reads the component metadata the way Dapr 1.18 (components-contrib
// conversation/anthropic) does: key (required), model (the ANTHROPIC_MODEL environment
// variable wins over it, then claude-sonnet-4-20250514), endpoint and apiType. Unlike
// Dapr, it reports token usage and never retries on its own: the router owns the one retry
// budget of a request.
package anthropic

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"time"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/libs/component"
	"github.com/parleyhq/parley/services/provider-worker/provider"
)

// Defaults and fixed protocol values.
const (
	// DefaultEndpoint is the base URL of the public Messages API, version segment included,
	// as Dapr's (langchaingo's) default.
	DefaultEndpoint = "https://api.anthropic.com/v1"
	// DefaultModel is Dapr 1.16+'s default model.
	DefaultModel = "claude-sonnet-4-20250514"
	// ModelEnv names the environment variable whose value overrides the model metadata.
	ModelEnv = "ANTHROPIC_MODEL"
	// APIVersion is sent in the anthropic-version header.
	APIVersion = "2023-06-01"
	// DefaultMaxTokens is sent when the request sets no max_tokens, which the Messages API
	// requires.
	DefaultMaxTokens = 4096
	// APITypeFoundry selects Claude on Microsoft Foundry.
	APITypeFoundry = "foundry"

	// maxResponseBytes bounds the response body the provider reads.
	maxResponseBytes = 32 << 20
)

// Provider calls the Messages API for one component. It is safe for concurrent use.
type Provider struct {
	url    string // {endpoint}/messages
	key    string // never logged, never in an error
	model  string
	client *http.Client
	now    func() time.Time
	log    *slog.Logger
}

// New returns the provider of component c. It fails when the key is missing, when apiType
// is foundry without an endpoint, or when the endpoint is not a URL that
// provider.ParseEndpoint and opts' allow-list accept. The endpoint must also use https:
// plain http is accepted for loopback hosts only (local emulators and tests), since every
// request carries the key.
//
// The endpoint is the API base URL including its version segment, as in Dapr (and
// langchaingo, whose default is https://api.anthropic.com/v1): requests go to
// {endpoint}/messages. For Foundry that is https://{resource}.services.ai.azure.com/anthropic/v1.
// Foundry takes the key in the same x-api-key header as Anthropic's own API.
func New(c component.Component, opts provider.Options) (*Provider, error) {
	key, ok := provider.Metadata(c, "key")
	if !ok {
		return nil, fmt.Errorf("anthropic: component %q: metadata \"key\" is required", c.Name)
	}
	apiType, _ := provider.Metadata(c, "apiType")
	endpoint, _ := provider.Metadata(c, "endpoint")
	switch {
	case strings.EqualFold(apiType, APITypeFoundry):
		if endpoint == "" {
			return nil, fmt.Errorf("anthropic: component %q: metadata \"endpoint\" is required when apiType is %q",
				c.Name, APITypeFoundry)
		}
	case apiType == "" || strings.EqualFold(apiType, "anthropic"):
		if endpoint == "" {
			endpoint = DefaultEndpoint
		}
	default:
		return nil, fmt.Errorf("anthropic: component %q: metadata \"apiType\": %q is neither anthropic nor foundry",
			c.Name, apiType)
	}
	u, err := provider.ParseEndpoint(endpoint, opts.EndpointAllowlist)
	if err != nil {
		return nil, fmt.Errorf("anthropic: component %q: metadata \"endpoint\": %w", c.Name, err)
	}
	if u.Scheme != "https" && !isLoopback(u.Hostname()) {
		return nil, fmt.Errorf("anthropic: component %q: metadata \"endpoint\": %w: %q: the key would travel in "+
			"clear text; use https (http is accepted for loopback hosts only)", c.Name, provider.ErrEndpoint, u.Redacted())
	}
	return &Provider{
		url:    u.String() + "/messages",
		key:    key,
		model:  opts.Model(c, ModelEnv, DefaultModel),
		client: opts.HTTPClient(),
		now:    opts.Clock(),
		log:    opts.Log(),
	}, nil
}

// isLoopback reports whether host is "localhost" or a loopback IP address.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	addr, err := netip.ParseAddr(host)
	return err == nil && addr.Unmap().IsLoopback()
}

// Model returns the model the provider asks for.
func (p *Provider) Model() string { return p.model }

// URL returns the Messages API URL the provider posts to.
func (p *Provider) URL() string { return p.url }

// send posts body to the Messages API, asking for accept, and returns the response
// whatever its status (the caller closes its body): a failure to send is UNAVAILABLE, or
// wraps ctx.Err() once ctx is done, and never holds the key.
func (p *Provider) send(ctx context.Context, body []byte, accept string) (*http.Response, error) {
	httpReq, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url, bytes.NewReader(body))
	if err != nil {
		return nil, provider.Internal(fmt.Errorf("anthropic: build request: %w", err))
	}
	httpReq.Header.Set("Content-Type", "application/json")
	httpReq.Header.Set("Accept", accept)
	httpReq.Header.Set("Anthropic-Version", APIVersion)
	httpReq.Header.Set("X-Api-Key", p.key)
	resp, err := p.client.Do(httpReq)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, fmt.Errorf("anthropic: send request: %w", ctxErr)
		}
		// Connection refused, reset, TLS failure: the next try may reach a healthy host.
		return nil, provider.Unavailable(fmt.Errorf("anthropic: send request: %w", redactErr(err, p.key)), 0)
	}
	return resp, nil
}

// Converse sends req to the Messages API and maps the answer. Failures are *provider.Error
// values whose code says whether another try may work (see provider.HTTPError; Anthropic's
// 529 overloaded_error is UNAVAILABLE like any 5xx); a done ctx gives an error wrapping
// ctx.Err(). No error text holds the key, the prompt or the provider's free-text message.
func (p *Provider) Converse(ctx context.Context, req *providerv1.Request) (*providerv1.Response, error) {
	body, responseTool, err := encodeRequest(p.model, req, func(err error) {
		p.log.WarnContext(ctx, "response_format ignored: not convertible to a json_schema",
			"provider", "anthropic", "request_id", req.GetRequestId(), "err", err)
	})
	if err != nil {
		return nil, provider.InvalidArgument(fmt.Errorf("anthropic: %w", err))
	}
	resp, err := p.send(ctx, body, "application/json")
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()

	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, fmt.Errorf("anthropic: read response: %w", ctxErr)
		}
		return nil, provider.Unavailable(fmt.Errorf("anthropic: read response (HTTP %d): %w", resp.StatusCode, err), 0)
	}
	if len(data) > maxResponseBytes {
		return nil, provider.Internal(fmt.Errorf("anthropic: response larger than %d bytes", maxResponseBytes))
	}
	if resp.StatusCode != http.StatusOK {
		return nil, provider.HTTPError("anthropic", resp.StatusCode, resp.Header, provider.ParseAPIError(data), p.now())
	}
	out, err := decodeResponse(data, responseTool)
	if err != nil {
		return nil, provider.Internal(fmt.Errorf("anthropic: decode response: %w", err))
	}
	return out, nil
}

// redactErr returns err, or an error with the same text minus every occurrence of key.
func redactErr(err error, key string) error {
	if key == "" || !strings.Contains(err.Error(), key) {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), key, "[REDACTED]"))
}
