// Package bedrock implements the conversation.aws.bedrock component against the Amazon
// Bedrock Runtime Converse API (POST /model/{modelId}/converse), signed with SigV4 through
// the AWS SDK for Go v2.
//
// It reads the component metadata of Dapr's AWS authentication profile: region (else
// AWS_REGION and the shared config), endpoint (for emulators), accessKey, secretKey and
// sessionToken (else the SDK's default credential chain: environment, shared files, SSO,
// web identity, ECS, EC2 IMDS), assumeRoleArn, and model (default
// amazon.titan-text-lite-v1). Unlike Dapr, it reports token usage. The SDK's own retries
// are off: the router owns the one retry budget of a request.
package bedrock

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go/logging"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/libs/component"
	"github.com/parleyhq/parley/services/provider-worker/provider"
)

// DefaultModel is the model Dapr's Bedrock component (langchaingo) uses when the component
// names none.
const DefaultModel = "amazon.titan-text-lite-v1"

// idleConnsPerHost keeps enough warm connections for the worker's default concurrency, as
// provider.Options.HTTPClient does for the other providers.
const idleConnsPerHost = 64

// RegionEnv names the environment variable read when the component sets no region.
const RegionEnv = "AWS_REGION"

// Provider calls the Converse API for one component. It is safe for concurrent use.
type Provider struct {
	client *bedrockruntime.Client
	model  string
	// modelSet says whether the component named the model; only then is it reported in
	// responses, as Dapr does.
	modelSet bool
	// secrets are the static credentials of the component, removed from error text should
	// the service ever echo them.
	secrets []string
	now     func() time.Time
	log     *slog.Logger
}

// New returns the provider of component c. It resolves the region and the credential chain
// now, without calling AWS: credentials are fetched on the first call. It fails when no
// region is configured, when only one of accessKey and secretKey is set, when the endpoint
// is not a URL that provider.ParseEndpoint and opts' allow-list accept, or when the
// component asks for IAM Roles Anywhere, which Parley does not implement.
//
// load is applied after the provider's own options to config.LoadDefaultConfig; tests use
// it to keep the SDK away from the machine's AWS files and instance metadata.
func New(ctx context.Context, c component.Component, opts provider.Options, load ...func(*config.LoadOptions) error) (
	*Provider, error,
) {
	get := func(key string) string {
		v, _ := provider.Metadata(c, key)
		return strings.TrimSpace(v)
	}
	fail := func(format string, args ...any) error {
		return fmt.Errorf("bedrock: component %q: "+format, append([]any{c.Name}, args...)...)
	}
	accessKey, secretKey, sessionToken := get("accessKey"), get("secretKey"), get("sessionToken")
	if (accessKey == "") != (secretKey == "") {
		return nil, fail("metadata \"accessKey\" and \"secretKey\" must be set together")
	}
	if get("trustAnchorArn") != "" || get("trustProfileArn") != "" {
		return nil, fail("metadata \"trustAnchorArn\"/\"trustProfileArn\" (IAM Roles Anywhere) is not supported")
	}
	var endpoint string
	if raw := get("endpoint"); raw != "" {
		u, err := provider.ParseEndpoint(raw, opts.EndpointAllowlist)
		if err != nil {
			return nil, fail("metadata \"endpoint\": %w", err)
		}
		endpoint = u.String()
	}
	all := []func(*config.LoadOptions) error{
		config.WithLogger(logging.Nop{}),
		config.WithRetryer(func() aws.Retryer { return aws.NopRetryer{} }),
		// The SDK's buildable client, so that AWS_CA_BUNDLE and the shared config's
		// ca_bundle still apply; redirects are not followed by the Converse operation.
		config.WithHTTPClient(awshttp.NewBuildableClient().WithTransportOptions(func(t *http.Transport) {
			t.MaxIdleConnsPerHost = idleConnsPerHost
		})),
	}
	region := get("region")
	if region == "" {
		region, _ = opts.Env(RegionEnv)
	}
	if region != "" {
		all = append(all, config.WithRegion(region))
	}
	if accessKey != "" {
		all = append(all, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(accessKey, secretKey, sessionToken)))
	}
	all = append(all, load...)
	cfg, err := config.LoadDefaultConfig(ctx, all...)
	if err != nil {
		return nil, fail("load AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		return nil, fail("no region: set metadata \"region\" or %s", RegionEnv)
	}
	if arn := get("assumeRoleArn"); arn != "" {
		cfg.Credentials = aws.NewCredentialsCache(stscreds.NewAssumeRoleProvider(sts.NewFromConfig(cfg), arn))
	}
	client := bedrockruntime.NewFromConfig(cfg, func(o *bedrockruntime.Options) {
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
		}
		o.Retryer = aws.NopRetryer{}
		o.RetryMaxAttempts = 1
		if opts.Transport != nil {
			o.HTTPClient = opts.HTTPClient()
		}
	})
	model, modelSet := get("model"), true
	if model == "" {
		model, modelSet = DefaultModel, false
	}
	p := &Provider{client: client, model: model, modelSet: modelSet, now: opts.Clock(), log: opts.Log()}
	for _, s := range []string{accessKey, secretKey, sessionToken} {
		if s != "" {
			p.secrets = append(p.secrets, s)
		}
	}
	return p, nil
}

// Model returns the model id the provider calls.
func (p *Provider) Model() string { return p.model }

// Converse sends req to the Converse API and maps the answer. Failures are *provider.Error
// values whose code says whether another try may work; a done ctx gives an error wrapping
// ctx.Err().
func (p *Provider) Converse(ctx context.Context, req *providerv1.Request) (*providerv1.Response, error) {
	in, responseTool, err := encodeRequest(p.model, req, func(err error) {
		p.log.WarnContext(ctx, "response_format ignored: not convertible to a json_schema",
			"provider", "bedrock", "request_id", req.GetRequestId(), "err", err)
	})
	if err != nil {
		return nil, provider.InvalidArgument(fmt.Errorf("bedrock: %w", err))
	}
	out, err := p.client.Converse(ctx, in)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, fmt.Errorf("bedrock: converse: %w", ctxErr)
		}
		// The SDK may have acted on the deadline (its own context's timer) a moment before
		// ctx's own timer fired: past the deadline, the deadline is the cause.
		if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
			return nil, fmt.Errorf("bedrock: converse: %w", context.DeadlineExceeded)
		}
		return nil, p.callError(err)
	}
	res, err := decodeResponse(out, responseTool)
	if err != nil {
		return nil, provider.Internal(fmt.Errorf("bedrock: %w", err))
	}
	if p.modelSet {
		res.Model = p.model
	}
	return res, nil
}
