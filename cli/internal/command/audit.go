package command

import (
	"context"
	"flag"
	"fmt"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/parleyhq/parley/gen/pb/parley/audit/v1"
	"github.com/parleyhq/parley/gen/pb/parley/audit/v1/auditv1connect"
)

// timeRange holds the -since, -start and -end flags.
type timeRange struct {
	since, start, end string
}

func (r *timeRange) register(fs *flag.FlagSet, sinceHelp string) {
	fs.StringVar(&r.since, "since", "", sinceHelp)
	fs.StringVar(&r.start, "start", "", "start, inclusive: RFC 3339 time or YYYY-MM-DD (UTC)")
	fs.StringVar(&r.end, "end", "", "end, exclusive: RFC 3339 time or YYYY-MM-DD (UTC)")
}

// resolve returns the range's timestamps; nil means unset.
func (r *timeRange) resolve(now time.Time) (start, end *timestamppb.Timestamp, err error) {
	if r.since != "" && r.start != "" {
		return nil, nil, fmt.Errorf("%w: -since and -start exclude each other", errUsage)
	}
	if r.since != "" {
		d, err := ParseSince(r.since)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: -since: %w", errUsage, err)
		}
		start = timestamppb.New(now.Add(-d))
	}
	if r.start != "" {
		t, err := ParseTime(r.start)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: -start: %w", errUsage, err)
		}
		start = timestamppb.New(t)
	}
	if r.end != "" {
		t, err := ParseTime(r.end)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: -end: %w", errUsage, err)
		}
		end = timestamppb.New(t)
	}
	return start, end, nil
}

// audit runs `parley audit list|get|stats`.
func audit(ctx context.Context, g *global, command string, args []string, io IO) error {
	var run func(context.Context, *auditCall, []string) error
	switch command {
	case "list":
		run = list
	case "get":
		run = get
	case "stats":
		run = stats
	default:
		_, _ = fmt.Fprint(io.Stderr, usage)
		return fmt.Errorf("%w: unknown command audit %s", errUsage, command)
	}
	return run(ctx, &auditCall{g: g, io: io}, args)
}

// TenantHeader names the tenant an admin API key queries (the router's auditapi).
const TenantHeader = "Parley-Tenant"

// tenantHeader sets TenantHeader on every call.
func tenantHeader(tenant string) connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			req.Header().Set(TenantHeader, tenant)
			return next(ctx, req)
		}
	}
}

// auditCall is what an audit command works with once its flags are parsed.
type auditCall struct {
	g      *global
	io     IO
	client auditv1connect.AuditServiceClient
	p      printer
}

// parseFlags parses the command's flags and wants exactly positional arguments; it then
// builds the client and the printer.
func (c *auditCall) parseFlags(fs *flag.FlagSet, synopsis string, args []string, positional int) ([]string, error) {
	tenant := fs.String("tenant", "", "query this tenant's log (an admin API key only)")
	rest, err := parseCommand(fs, c.g, synopsis, args, c.io)
	if err != nil {
		return nil, err
	}
	if len(rest) != positional {
		return nil, fmt.Errorf("%w: %s takes %d argument(s), got %q", errUsage, fs.Name(), positional, rest)
	}
	opts := connectOptions(c.g)
	if *tenant != "" {
		opts = append(opts, connect.WithInterceptors(tenantHeader(*tenant)))
	}
	c.client = auditv1connect.NewAuditServiceClient(httpClient(c.g, c.io.HTTPClient), c.g.router, opts...)
	c.p = printer{w: c.io.Stdout, json: c.g.json()}
	return rest, nil
}

func list(ctx context.Context, c *auditCall, args []string) error {
	fs := flag.NewFlagSet("parley audit list", flag.ContinueOnError)
	var (
		r                                       timeRange
		component, model, status, errorCode     string
		contextID, cacheHit, minLatency, search string
		pageToken                               string
		pageSize, limit                         int
		all                                     bool
	)
	r.register(fs, "only the last period: 30m, 24h, 7d")
	fs.StringVar(&component, "component", "", "component name")
	fs.StringVar(&model, "model", "", "model")
	fs.StringVar(&status, "status", "", "ok or error")
	fs.StringVar(&errorCode, "error-code", "", "error code, e.g. ERR_CONVERSATION_INVOKE")
	fs.StringVar(&contextID, "context-id", "", "conversation context id")
	fs.StringVar(&cacheHit, "cache-hit", "", "true or false")
	fs.StringVar(&minLatency, "min-latency", "", "only conversations at least this slow, e.g. 500ms")
	fs.StringVar(&search, "search", "", "words that the scrubbed request or response must all contain")
	fs.IntVar(&pageSize, "page-size", 0, "conversations per page (server default 50, at most 1000)")
	fs.StringVar(&pageToken, "page-token", "", "continue from a previous page")
	fs.BoolVar(&all, "all", false, "follow every page (up to -limit conversations)")
	fs.IntVar(&limit, "limit", 10000, "with -all, stop after this many conversations")
	if _, err := c.parseFlags(fs, "parley audit list [flags]", args, 0); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.g.timeout)
	defer cancel()
	req := &auditv1.ListConversationsRequest{
		Component: component, Model: model, ErrorCode: errorCode, ContextId: contextID, TextQuery: search,
		PageToken: pageToken,
	}
	if pageSize < 0 || pageSize > 1<<30 {
		return fmt.Errorf("%w: -page-size must not be negative, got %d", errUsage, pageSize)
	}
	req.PageSize = int32(pageSize) //nolint:gosec // bounded above
	var err error
	if req.StartTime, req.EndTime, err = r.resolve(c.io.Now()); err != nil {
		return err
	}
	if req.Status, err = ParseStatus(status); err != nil {
		return fmt.Errorf("%w: -status: %w", errUsage, err)
	}
	if cacheHit != "" {
		b, err := ParseBool(cacheHit)
		if err != nil {
			return fmt.Errorf("%w: -cache-hit: %w", errUsage, err)
		}
		req.CacheHit = proto.Bool(b)
	}
	if minLatency != "" {
		d, err := time.ParseDuration(minLatency)
		if err != nil || d < 0 {
			return fmt.Errorf("%w: -min-latency: want a duration such as 500ms, got %q", errUsage, minLatency)
		}
		req.MinLatency = durationpb.New(d)
	}

	out := &auditv1.ListConversationsResponse{}
	for {
		resp, err := c.client.ListConversations(ctx, req)
		if err != nil {
			return callError(c.g, "list conversations", err)
		}
		out.Conversations = append(out.Conversations, resp.GetConversations()...)
		out.NextPageToken = resp.GetNextPageToken()
		if !all || out.GetNextPageToken() == "" || len(out.GetConversations()) >= limit {
			break
		}
		req.PageToken = out.GetNextPageToken()
	}
	if err := c.p.list(out); err != nil {
		return err
	}
	if !c.p.json && out.GetNextPageToken() != "" {
		_, _ = fmt.Fprintf(c.io.Stderr, "more: -page-token %s\n", out.GetNextPageToken())
	}
	return nil
}

func get(ctx context.Context, c *auditCall, args []string) error {
	fs := flag.NewFlagSet("parley audit get", flag.ContinueOnError)
	rest, err := c.parseFlags(fs, "parley audit get [flags] REQUEST_ID", args, 1)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.g.timeout)
	defer cancel()
	resp, err := c.client.GetConversation(ctx, &auditv1.GetConversationRequest{RequestId: rest[0]})
	if err != nil {
		return callError(c.g, "get conversation", err)
	}
	return c.p.conversation(resp.GetConversation())
}

func stats(ctx context.Context, c *auditCall, args []string) error {
	fs := flag.NewFlagSet("parley audit stats", flag.ContinueOnError)
	var (
		r                timeRange
		bucket, groupBy  string
		component, model string
	)
	r.register(fs, "the last period: 24h, 7d (default 7 days of day buckets, 24 hours of hour buckets)")
	fs.StringVar(&bucket, "bucket", "day", "hour or day")
	fs.StringVar(&groupBy, "group-by", "", "comma-separated: component, model, key (usage per API key)")
	fs.StringVar(&component, "component", "", "only this component")
	fs.StringVar(&model, "model", "", "only this model")
	if _, err := c.parseFlags(fs, "parley audit stats [flags]", args, 0); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.g.timeout)
	defer cancel()
	req := &auditv1.GetUsageStatsRequest{Component: component, Model: model}
	var err error
	if req.Bucket, err = ParseBucket(bucket); err != nil {
		return fmt.Errorf("%w: -bucket: %w", errUsage, err)
	}
	if req.GroupBy, err = ParseGroupBy(groupBy); err != nil {
		return fmt.Errorf("%w: -group-by: %w", errUsage, err)
	}
	if req.StartTime, req.EndTime, err = r.resolve(c.io.Now()); err != nil {
		return err
	}
	resp, err := c.client.GetUsageStats(ctx, req)
	if err != nil {
		return callError(c.g, "usage stats", err)
	}
	return c.p.stats(resp, req.GetGroupBy())
}
