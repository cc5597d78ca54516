package command

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/parleyhq/parley/gen/pb/parley/audit/v1"
	conversationv1 "github.com/parleyhq/parley/gen/pb/parley/conversation/v1"
)

// printer renders results as a table or as JSON (protojson, one document per command).
type printer struct {
	w    io.Writer
	json bool
}

func (p printer) protoJSON(m proto.Message) error {
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	_, err = fmt.Fprintln(p.w, string(b))
	return err
}

func (p printer) table(header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(p.w, 0, 0, 2, ' ', 0)
	_, _ = fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		_, _ = fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

func (p printer) list(resp *auditv1.ListConversationsResponse) error {
	if p.json {
		return p.protoJSON(resp)
	}
	rows := make([][]string, 0, len(resp.GetConversations()))
	for _, c := range resp.GetConversations() {
		rows = append(rows, []string{
			formatTime(c.GetCreatedAt()), c.GetRequestId(), apiName(c.GetApi()), dash(c.GetComponent()), dash(c.GetModel()),
			statusName(c.GetStatus()), dash(c.GetErrorCode()), tokens(c.GetUsage()), yesNo(c.GetCacheHit()),
			formatDuration(c.GetLatency()), dash(c.GetContextId()),
		})
	}
	return p.table([]string{"CREATED", "REQUEST ID", "API", "COMPONENT", "MODEL", "STATUS", "ERROR", "TOKENS P/C/T", "CACHE", "LATENCY", "CONTEXT"}, rows)
}

func (p printer) conversation(c *auditv1.Conversation) error {
	if p.json {
		return p.protoJSON(c)
	}
	findings := make([]string, 0, len(c.GetPiiFindings()))
	for k, v := range c.GetPiiFindings() {
		findings = append(findings, k+"="+strconv.FormatInt(v, 10))
	}
	slices.Sort(findings)
	u := c.GetUsage()
	fields := [][2]string{
		{"request id", c.GetRequestId()},
		{"created", formatTime(c.GetCreatedAt())},
		{"tenant", c.GetTenant()},
		{"api", apiName(c.GetApi())},
		{"component", dash(c.GetComponent())},
		{"provider", dash(c.GetProvider())},
		{"model", dash(c.GetModel())},
		{"context id", dash(c.GetContextId())},
		{"status", statusName(c.GetStatus())},
		{"error code", dash(c.GetErrorCode())},
		{"error message", dash(c.GetErrorMessage())},
		{"finish reason", dash(c.GetFinishReason())},
		{"tokens", fmt.Sprintf("prompt %d, completion %d, total %d, cached %d, reasoning %d",
			u.GetPromptTokens(), u.GetCompletionTokens(), u.GetTotalTokens(), u.GetCachedTokens(), u.GetReasoningTokens())},
		{"cache hit", yesNo(c.GetCacheHit())},
		{"pii findings", dash(strings.Join(findings, ", "))},
		{"attempts", strconv.Itoa(int(c.GetAttempts()))},
		{"fallbacks", dash(strings.Join(c.GetFallbacks(), ", "))},
		{"worker", dash(c.GetWorkerId())},
		{"latency", formatDuration(c.GetLatency())},
		{"provider latency", formatDuration(c.GetProviderLatency())},
		{"trace id", dash(c.GetTraceId())},
		{"request", jsonText(c.GetRequest())},
		{"response", jsonText(c.GetResponse())},
	}
	tw := tabwriter.NewWriter(p.w, 0, 0, 2, ' ', 0)
	for _, f := range fields {
		_, _ = fmt.Fprintf(tw, "%s:\t%s\n", f[0], f[1])
	}
	return tw.Flush()
}

func (p printer) stats(resp *auditv1.GetUsageStatsResponse, groupBy []auditv1.UsageDimension) error {
	if p.json {
		return p.protoJSON(resp)
	}
	byComponent := slices.Contains(groupBy, auditv1.UsageDimension_USAGE_DIMENSION_COMPONENT)
	byModel := slices.Contains(groupBy, auditv1.UsageDimension_USAGE_DIMENSION_MODEL)
	byKey := slices.Contains(groupBy, auditv1.UsageDimension_USAGE_DIMENSION_KEY)
	header := []string{"BUCKET"}
	if byComponent {
		header = append(header, "COMPONENT")
	}
	if byModel {
		header = append(header, "MODEL")
	}
	if byKey {
		header = append(header, "KEY")
	}
	header = append(header, "REQUESTS", "ERRORS", "CACHE HITS", "TOKENS P/C/T", "MEAN", "P50", "P90", "P99")
	rows := make([][]string, 0, len(resp.GetStats()))
	estimated := false
	for _, s := range resp.GetStats() {
		row := []string{formatTime(s.GetBucketStart())}
		if byComponent {
			row = append(row, dash(s.GetComponent()))
		}
		if byModel {
			row = append(row, dash(s.GetModel()))
		}
		if byKey {
			row = append(row, dash(s.GetKeyId()))
		}
		mark := ""
		if s.GetLatencyEstimated() {
			mark, estimated = "~", true
		}
		row = append(row, strconv.FormatInt(s.GetRequests(), 10), strconv.FormatInt(s.GetErrors(), 10),
			fmt.Sprintf("%d (%.1f%%)", s.GetCacheHits(), 100*s.GetCacheHitRate()), tokens(s.GetUsage()),
			formatDuration(s.GetLatencyMean()), mark+formatDuration(s.GetLatencyP50()),
			mark+formatDuration(s.GetLatencyP90()), mark+formatDuration(s.GetLatencyP99()))
		rows = append(rows, row)
	}
	if err := p.table(header, rows); err != nil {
		return err
	}
	if estimated {
		_, err := fmt.Fprintln(p.w, "~ estimated from the daily roll-up's latency histogram (within about 10%)")
		return err
	}
	return nil
}

func formatTime(t *timestamppb.Timestamp) string {
	if t == nil {
		return "-"
	}
	return t.AsTime().UTC().Format("2006-01-02T15:04:05.000Z")
}

// formatDuration renders d with three significant digits or so: 850µs, 12.3ms, 1.24s.
func formatDuration(pd *durationpb.Duration) string {
	if pd == nil {
		return "-"
	}
	d := pd.AsDuration()
	switch {
	case d < time.Millisecond:
		return strconv.FormatInt(d.Microseconds(), 10) + "µs"
	case d < time.Second:
		return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 1, 64) + "ms"
	case d < time.Minute:
		return strconv.FormatFloat(d.Seconds(), 'f', 2, 64) + "s"
	default:
		return d.Round(time.Second).String()
	}
}

func tokens(u *auditv1.TokenUsage) string {
	return fmt.Sprintf("%d/%d/%d", u.GetPromptTokens(), u.GetCompletionTokens(), u.GetTotalTokens())
}

func apiName(a auditv1.Api) string {
	switch a {
	case auditv1.Api_API_ALPHA1:
		return "alpha1"
	case auditv1.Api_API_ALPHA2:
		return "alpha2"
	case auditv1.Api_API_NATIVE:
		return "native"
	default:
		return "-"
	}
}

func statusName(s auditv1.Status) string {
	switch s {
	case auditv1.Status_STATUS_OK:
		return "ok"
	case auditv1.Status_STATUS_ERROR:
		return "error"
	default:
		return "-"
	}
}

func yesNo(b bool) string {
	if b {
		return "hit"
	}
	return "-"
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// jsonText renders a stored request or response as compact JSON.
func jsonText(v *structpb.Value) string {
	if v == nil {
		return "-"
	}
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v.AsInterface()); err != nil {
		return "-"
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// writeAnswer prints each choice's text, then its tool calls, each ending a line.
func writeAnswer(w io.Writer, resp *conversationv1.ConverseResponse) error {
	var b strings.Builder
	for _, c := range resp.GetChoices() {
		if text := c.GetMessage().GetContent(); text != "" {
			b.WriteString(text)
			if !strings.HasSuffix(text, "\n") {
				b.WriteByte('\n')
			}
		}
		for _, tc := range c.GetMessage().GetToolCalls() {
			b.WriteString(toolCall(tc))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func toolCall(tc *conversationv1.ToolCall) string {
	return fmt.Sprintf("[tool call %s: %s(%s)]\n", dash(tc.GetId()), tc.GetName(), tc.GetArguments())
}

// summary is the line under an answer: its audit id, model, token usage and cache use.
func summary(requestID, model string, u *conversationv1.Usage, cacheHit bool) string {
	cache := "miss"
	if cacheHit {
		cache = "hit"
	}
	s := "request " + dash(requestID)
	if model != "" {
		s += "  model " + model
	}
	return s + fmt.Sprintf("  tokens %d/%d/%d  cache %s", u.GetPromptTokens(), u.GetCompletionTokens(), u.GetTotalTokens(), cache)
}

// streamPrinter prints a streamed answer as it arrives: the text of each chunk, a new line
// between choices, each tool call whole once its choice ends (its pieces are collected), or
// one JSON document per chunk and line.
type streamPrinter struct {
	w    io.Writer
	json bool
	// what the text output has written: whether anything, the last choice and whether
	// it ended a line
	started, lineEnded bool
	index              int64
	// the summary, from the chunks
	requestID string
	usage     *conversationv1.Usage
	cacheHit  bool
	// calls are the tool calls being streamed, in order of their first piece.
	calls []*streamedCall
}

// streamedCall is a tool call put together from its pieces.
type streamedCall struct {
	choice   int64
	index    int32
	id, name string
	args     strings.Builder
}

func (s *streamPrinter) chunk(m *conversationv1.ConverseStreamResponse) error {
	if m.GetRequestId() != "" {
		s.requestID = m.GetRequestId()
	}
	if m.GetUsage() != nil {
		s.usage = m.GetUsage()
	}
	s.cacheHit = s.cacheHit || m.GetCacheHit()
	if s.json {
		b, err := protojson.Marshal(m)
		if err != nil {
			return fmt.Errorf("encode: %w", err)
		}
		_, err = fmt.Fprintln(s.w, string(b))
		return err
	}
	for _, tc := range m.GetToolCalls() {
		s.collect(m.GetIndex(), tc)
	}
	var b strings.Builder
	if text := m.GetContentDelta(); text != "" {
		if s.started && m.GetIndex() != s.index && !s.lineEnded {
			b.WriteByte('\n')
		}
		b.WriteString(text)
	}
	if err := s.write(m.GetIndex(), b.String()); err != nil {
		return err
	}
	if m.GetFinishReason() != "" {
		return s.flushCalls(func(c *streamedCall) bool { return c.choice == m.GetIndex() })
	}
	return nil
}

// collect adds a tool call's piece: the first names the call, later ones add arguments.
func (s *streamPrinter) collect(choice int64, tc *conversationv1.ToolCall) {
	var c *streamedCall
	for _, p := range s.calls {
		if p.choice == choice && p.index == tc.GetIndex() {
			c = p
		}
	}
	if c == nil {
		c = &streamedCall{choice: choice, index: tc.GetIndex()}
		s.calls = append(s.calls, c)
	}
	if tc.GetId() != "" {
		c.id = tc.GetId()
	}
	if tc.GetName() != "" {
		c.name = tc.GetName()
	}
	c.args.WriteString(tc.GetArguments())
}

// flushCalls prints the collected tool calls that match, each on its own line.
func (s *streamPrinter) flushCalls(match func(*streamedCall) bool) error {
	var b strings.Builder
	kept := s.calls[:0]
	choice := s.index
	for _, c := range s.calls {
		if !match(c) {
			kept = append(kept, c)
			continue
		}
		if b.Len() == 0 && s.started && !s.lineEnded {
			b.WriteByte('\n')
		}
		b.WriteString(toolCall(&conversationv1.ToolCall{Id: c.id, Name: c.name, Arguments: c.args.String()}))
		choice = c.choice
	}
	s.calls = kept
	return s.write(choice, b.String())
}

// write prints text, part of choice.
func (s *streamPrinter) write(choice int64, text string) error {
	if text == "" {
		return nil
	}
	s.started, s.index = true, choice
	s.lineEnded = strings.HasSuffix(text, "\n")
	_, err := io.WriteString(s.w, text)
	return err
}

// end finishes the last line of text output.
func (s *streamPrinter) end() error {
	if s.json {
		return nil
	}
	if err := s.flushCalls(func(*streamedCall) bool { return true }); err != nil {
		return err
	}
	if !s.started || s.lineEnded {
		return nil
	}
	s.lineEnded = true
	_, err := io.WriteString(s.w, "\n")
	return err
}
