// Package otlpsink is an in-process OTLP/HTTP receiver for traces: the services export
// to it (OTEL_EXPORTER_OTLP_ENDPOINT=Sink.Endpoint()), and it keeps their spans for a
// test to inspect, or prints each conversation's trace as a compact tree (`make up
// TRACES=1`). It stands in for a collector, with no infrastructure: OTLP protobuf (or
// JSON) requests on /v1/traces, gzip or not; metrics and logs are accepted and dropped.
package otlpsink

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// maxBody bounds one export request (after decompression), as a collector's default does.
const maxBody = 32 << 20

// Span is one received span, flattened: ids in lowercase hex, attribute values as text.
type Span struct {
	TraceID, SpanID, ParentSpanID string
	// Service is the resource's service.name.
	Service    string
	Name       string
	Kind       tracepb.Span_SpanKind
	Start, End time.Time
	Attributes map[string]string
	Events     []Event
	Links      []Link
	// Error is true when the span's status is an error; StatusMessage says why.
	Error         bool
	StatusMessage string
}

// Duration is End less Start.
func (s Span) Duration() time.Duration { return s.End.Sub(s.Start) }

// Event is a span event.
type Event struct {
	Name       string
	Attributes map[string]string
}

// Link points to another span.
type Link struct{ TraceID, SpanID string }

// Sink receives spans over OTLP/HTTP on a loopback port.
type Sink struct {
	srv *http.Server
	mux *http.ServeMux
	ln  net.Listener

	mu    sync.Mutex
	spans []Span
	// arrived is when each trace last received a span, for Print.
	arrived map[string]time.Time
	// discard: count spans, keep none (Discard).
	discard  bool
	received int
}

// Discard makes the sink count the spans it receives and keep none, for a benchmark.
func (s *Sink) Discard() {
	s.mu.Lock()
	s.discard = true
	s.mu.Unlock()
}

// Received is how many spans the sink has received.
func (s *Sink) Received() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.received
}

// Start listens on addr ("127.0.0.1:0" for a free port) and serves until Close.
func Start(addr string) (*Sink, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("otlp sink: %w", err)
	}
	s := &Sink{ln: ln, arrived: map[string]time.Time{}, mux: http.NewServeMux()}
	s.mux.HandleFunc("POST /v1/traces", s.traces)
	s.mux.HandleFunc("POST /v1/metrics", discard)
	s.mux.HandleFunc("POST /v1/logs", discard)
	s.srv = &http.Server{Handler: s.mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

// ServeHTTP serves the OTLP/HTTP paths, as the sink's own listener does.
func (s *Sink) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Endpoint is the value of OTEL_EXPORTER_OTLP_ENDPOINT that sends to the sink.
func (s *Sink) Endpoint() string { return "http://" + s.ln.Addr().String() }

// Close stops the server.
func (s *Sink) Close(ctx context.Context) error { return s.srv.Shutdown(ctx) }

// Spans returns every span received so far, in arrival order.
func (s *Sink) Spans() []Span {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.spans)
}

// Trace returns the spans of trace id received so far.
func (s *Sink) Trace(id string) []Span {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Span
	for _, sp := range s.spans {
		if sp.TraceID == id {
			out = append(out, sp)
		}
	}
	return out
}

func discard(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, maxBody))
	w.Header().Set("Content-Type", r.Header.Get("Content-Type"))
	w.WriteHeader(http.StatusOK)
}

func (s *Sink) traces(w http.ResponseWriter, r *http.Request) {
	req, jsonBody, err := decode(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.add(Flatten(req))
	resp := &collectortrace.ExportTraceServiceResponse{}
	var b []byte
	if jsonBody {
		w.Header().Set("Content-Type", "application/json")
		b, _ = protojson.Marshal(resp)
	} else {
		w.Header().Set("Content-Type", "application/x-protobuf")
		b, _ = proto.Marshal(resp)
	}
	_, _ = w.Write(b)
}

// decode reads an export request: protobuf, or JSON when the content type says so,
// gzip-compressed or not.
func decode(r *http.Request) (*collectortrace.ExportTraceServiceRequest, bool, error) {
	var body io.Reader = r.Body
	switch r.Header.Get("Content-Encoding") {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			return nil, false, fmt.Errorf("gzip: %w", err)
		}
		defer func() { _ = zr.Close() }()
		body = zr
	default:
		return nil, false, errors.New("unsupported Content-Encoding")
	}
	b, err := io.ReadAll(io.LimitReader(body, maxBody+1))
	if err != nil {
		return nil, false, fmt.Errorf("read: %w", err)
	}
	if len(b) > maxBody {
		return nil, false, errors.New("request too large")
	}
	req := &collectortrace.ExportTraceServiceRequest{}
	jsonBody := strings.HasPrefix(r.Header.Get("Content-Type"), "application/json")
	if jsonBody {
		err = protojson.Unmarshal(b, req)
	} else {
		err = proto.Unmarshal(b, req)
	}
	if err != nil {
		return nil, false, fmt.Errorf("decode: %w", err)
	}
	return req, jsonBody, nil
}

func (s *Sink) add(spans []Span) {
	if len(spans) == 0 {
		return
	}
	now := time.Now()
	s.mu.Lock()
	s.received += len(spans)
	if s.discard {
		s.mu.Unlock()
		return
	}
	s.spans = append(s.spans, spans...)
	for _, sp := range spans {
		s.arrived[sp.TraceID] = now
	}
	s.mu.Unlock()
}

// Flatten turns an export request into Spans.
func Flatten(req *collectortrace.ExportTraceServiceRequest) []Span {
	var out []Span
	for _, rs := range req.GetResourceSpans() {
		service := attrs(rs.GetResource().GetAttributes())["service.name"]
		for _, ss := range rs.GetScopeSpans() {
			for _, sp := range ss.GetSpans() {
				f := Span{
					TraceID:       hex.EncodeToString(sp.GetTraceId()),
					SpanID:        hex.EncodeToString(sp.GetSpanId()),
					ParentSpanID:  hex.EncodeToString(sp.GetParentSpanId()),
					Service:       service,
					Name:          sp.GetName(),
					Kind:          sp.GetKind(),
					Start:         time.Unix(0, int64(sp.GetStartTimeUnixNano())), //nolint:gosec // nanoseconds since 1970 fit
					End:           time.Unix(0, int64(sp.GetEndTimeUnixNano())),   //nolint:gosec // nanoseconds since 1970 fit
					Attributes:    attrs(sp.GetAttributes()),
					Error:         sp.GetStatus().GetCode() == tracepb.Status_STATUS_CODE_ERROR,
					StatusMessage: sp.GetStatus().GetMessage(),
				}
				for _, e := range sp.GetEvents() {
					f.Events = append(f.Events, Event{Name: e.GetName(), Attributes: attrs(e.GetAttributes())})
				}
				for _, l := range sp.GetLinks() {
					f.Links = append(f.Links, Link{TraceID: hex.EncodeToString(l.GetTraceId()), SpanID: hex.EncodeToString(l.GetSpanId())})
				}
				out = append(out, f)
			}
		}
	}
	return out
}

func attrs(kvs []*commonpb.KeyValue) map[string]string {
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		m[kv.GetKey()] = valueText(kv.GetValue())
	}
	return m
}

// valueText renders an attribute value: strings as they are, arrays as [a b], anything
// else as its protobuf text.
func valueText(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_IntValue:
		return fmt.Sprint(x.IntValue)
	case *commonpb.AnyValue_BoolValue:
		return fmt.Sprint(x.BoolValue)
	case *commonpb.AnyValue_DoubleValue:
		return fmt.Sprint(x.DoubleValue)
	case *commonpb.AnyValue_BytesValue:
		return string(x.BytesValue)
	case *commonpb.AnyValue_ArrayValue:
		parts := make([]string, len(x.ArrayValue.GetValues()))
		for i, e := range x.ArrayValue.GetValues() {
			parts[i] = valueText(e)
		}
		return "[" + strings.Join(parts, " ") + "]"
	case *commonpb.AnyValue_KvlistValue:
		var b bytes.Buffer
		for _, kv := range x.KvlistValue.GetValues() {
			fmt.Fprintf(&b, "%s=%s ", kv.GetKey(), valueText(kv.GetValue()))
		}
		return strings.TrimSpace(b.String())
	}
	return ""
}
