package store

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/libs/jsondepth"
)

// sameJSON reports whether a and b parse to the same JSON value, numbers compared as
// they are written.
func sameJSON(t *testing.T, a, b []byte) bool {
	t.Helper()
	parse := func(b []byte) any {
		d := json.NewDecoder(bytes.NewReader(b))
		d.UseNumber()
		var v any
		if err := d.Decode(&v); err != nil {
			t.Fatalf("not JSON: %v: %s", err, b)
		}
		return v
	}
	return reflect.DeepEqual(parse(a), parse(b))
}

// checkLikeProtojson fails unless marshalJSON(m) is what protojson.Marshal(m) writes, or
// both fail.
func checkLikeProtojson(t *testing.T, m proto.Message) {
	t.Helper()
	want, wantErr := protojson.Marshal(m)
	got, direct, err := marshalJSON(m)
	switch {
	case (err != nil) != (wantErr != nil):
		t.Fatalf("error %v, protojson's %v, for %v", err, wantErr, m)
	case err == nil && !sameJSON(t, got, want):
		t.Fatalf("got  %s\nwant %s", got, want)
	case direct && (!utf8.Valid(got) || !json.Valid(got) || jsondepth.Exceeds(got, maxJSONDepth)):
		t.Fatalf("written directly but not valid UTF-8 JSON of a bounded depth: %s", got)
	}
}

// randomMessages makes messages with every field of Request and Response, each often at
// its edge values: empty, zero, negative zero, NaN, escapes, invalid durations.
type randomMessages struct{ r *rand.Rand }

func (g randomMessages) pick(n int) int { return g.r.IntN(n) }

func (g randomMessages) str() string {
	pool := []string{"", "a", "hello world", `quote " and \ backslash`, "nul \x00 byte", "\x01\x1f\x7f",
		"tab\tnew\nline\rfeed\fback\b", "é ü 😀", "\u2028\u2029", "<script>&amp;</script>", "\uFFFD",
		strings.Repeat("long text ", 50), "bad \xff utf-8"}
	return pool[g.pick(len(pool))]
}

func (g randomMessages) double() float64 {
	pool := []float64{0, math.Copysign(0, -1), 0.7, 1, -2.5, 1e-7, 1e-6, 1e20, 1e21, -1e-300, 5e-324,
		math.MaxFloat64, math.NaN(), math.Inf(1), math.Inf(-1), 123456789.123456789, 1.0 / 3}
	return pool[g.pick(len(pool))]
}

func (g randomMessages) int64() int64 {
	pool := []int64{0, 1, -1, 42, math.MaxInt64, math.MinInt64}
	return pool[g.pick(len(pool))]
}

func (g randomMessages) duration() *durationpb.Duration {
	switch g.pick(8) {
	case 0:
		return nil
	case 1:
		return &durationpb.Duration{Seconds: 315576000001} // out of range
	case 2:
		return &durationpb.Duration{Seconds: 1, Nanos: -1} // signs differ
	case 3:
		return &durationpb.Duration{Seconds: -3, Nanos: -500000000}
	case 4:
		return &durationpb.Duration{Nanos: 1_000_000_000} // nanos out of range
	default:
		nanos := []int32{0, 1, 10, 1000, 1_500_000, 500_000_000, 999_999_999}[g.pick(7)]
		return &durationpb.Duration{Seconds: g.r.Int64N(1_000_000), Nanos: nanos}
	}
}

func (g randomMessages) timestamp() *timestamppb.Timestamp {
	switch g.pick(6) {
	case 0:
		return nil
	case 1:
		return &timestamppb.Timestamp{Seconds: 253402300800} // year 10000
	case 2:
		return &timestamppb.Timestamp{Seconds: -62135596800} // 0001-01-01
	case 3:
		return &timestamppb.Timestamp{Seconds: 1, Nanos: -1}
	default:
		nanos := []int32{0, 7, 120_000, 5_000_000, 999_999_999}[g.pick(5)]
		return &timestamppb.Timestamp{Seconds: g.r.Int64N(4_000_000_000), Nanos: nanos}
	}
}

func (g randomMessages) structpb() *structpb.Struct {
	if g.pick(3) > 0 {
		return nil
	}
	s, err := structpb.NewStruct(map[string]any{"type": "object", "n": 1.5, "list": []any{"a", true, nil}})
	if err != nil {
		panic(err)
	}
	return s
}

func (g randomMessages) toolCall() *providerv1.ToolCall {
	if g.pick(10) == 0 {
		return nil
	}
	return &providerv1.ToolCall{Id: g.str(), Type: g.str(), Name: g.str(), Arguments: g.str()}
}

func (g randomMessages) request() *providerv1.Request {
	r := &providerv1.Request{RequestId: g.str(), Tenant: g.str(), Component: g.str(), ToolChoice: g.str(),
		Temperature: g.double(), ResponseFormat: g.structpb(), PromptCacheRetention: g.duration(),
		Deadline: g.timestamp(), Stream: g.pick(2) == 0, StreamWindow: uint32(g.pick(3)) * 1000}
	for range g.pick(4) {
		m := &providerv1.Message{Role: providerv1.Role([]int32{0, 1, 2, 3, 7, 42}[g.pick(6)])}
		for range g.pick(4) {
			p := &providerv1.Part{}
			switch g.pick(4) {
			case 0:
				p.Kind = &providerv1.Part_Text{Text: g.str()}
			case 1:
				p.Kind = &providerv1.Part_ToolCall{ToolCall: g.toolCall()}
			case 2:
				p.Kind = &providerv1.Part_ToolResult{ToolResult: &providerv1.ToolResult{ToolCallId: g.str(), Name: g.str(), Content: g.str()}}
			}
			m.Parts = append(m.Parts, p)
		}
		r.Messages = append(r.Messages, m)
	}
	for range g.pick(3) {
		r.Tools = append(r.Tools, &providerv1.Tool{Type: g.str(), Name: g.str(), Description: g.str(), Parameters: g.structpb()})
	}
	if g.pick(2) == 0 {
		n := g.int64()
		r.MaxTokens = &n
	}
	for range g.pick(3) {
		r.Stop = append(r.Stop, g.str())
	}
	if n := g.pick(4); n > 0 {
		r.Metadata = map[string]string{}
		for range n {
			r.Metadata[g.str()] = g.str()
		}
	}
	return r
}

func (g randomMessages) response() *providerv1.Response {
	r := &providerv1.Response{Model: g.str(), WorkerId: g.str(), ProviderLatency: g.duration(), Attempts: int32(g.int64() % 1000)}
	for range g.pick(4) {
		c := &providerv1.Choice{Index: g.int64(), FinishReason: g.str(), Content: g.str()}
		for range g.pick(3) {
			c.ToolCalls = append(c.ToolCalls, g.toolCall())
		}
		r.Choices = append(r.Choices, c)
	}
	if g.pick(3) > 0 {
		n := func() uint64 { return []uint64{0, 1, 77, math.MaxUint64}[g.pick(4)] }
		r.Usage = &providerv1.Usage{PromptTokens: n(), CompletionTokens: n(), TotalTokens: n(), PromptCachedTokens: n(),
			PromptAudioTokens: n(), CompletionReasoningTokens: n(), CompletionAudioTokens: n(),
			CompletionAcceptedPredictionTokens: n(), CompletionRejectedPredictionTokens: n()}
	}
	return r
}

// TestMessageJSON: the direct encoders write what protojson.Marshal writes for the audit
// copy's messages (as parsed JSON, numbers as written), and fail where it fails: over
// fixed cases and 5,000 random messages of each kind.
func TestMessageJSON(t *testing.T) {
	t.Parallel()
	maxTokens := int64(0)
	fixed := []proto.Message{
		&providerv1.Request{},
		&providerv1.Response{},
		&providerv1.Request{MaxTokens: &maxTokens}, // present though zero
		&providerv1.Request{Temperature: math.Copysign(0, -1)},
		&providerv1.Request{Messages: []*providerv1.Message{{Parts: []*providerv1.Part{{Kind: &providerv1.Part_Text{}}}}}},
		&providerv1.Response{ProviderLatency: &durationpb.Duration{}},
		&providerv1.Response{ProviderLatency: &durationpb.Duration{Nanos: -1}},
		&providerv1.Response{Usage: &providerv1.Usage{}},
		&providerv1.Request{RequestId: "bad \xc3"},
	}
	for _, m := range fixed {
		checkLikeProtojson(t, m)
	}
	g := randomMessages{rand.New(rand.NewPCG(1, 2))}
	for range 5000 {
		checkLikeProtojson(t, g.request())
		checkLikeProtojson(t, g.response())
	}
}

// FuzzMessageJSON: any Request or Response that decodes is encoded as protojson does.
func FuzzMessageJSON(f *testing.F) {
	g := randomMessages{rand.New(rand.NewPCG(3, 4))}
	for range 20 {
		for _, m := range []proto.Message{g.request(), g.response()} {
			if b, err := proto.Marshal(m); err == nil {
				_, isResponse := m.(*providerv1.Response)
				f.Add(b, isResponse)
			}
		}
	}
	f.Fuzz(func(t *testing.T, b []byte, isResponse bool) {
		var m proto.Message = &providerv1.Request{}
		if isResponse {
			m = &providerv1.Response{}
		}
		if proto.Unmarshal(b, m) != nil {
			return
		}
		checkLikeProtojson(t, m)
	})
}

// BenchmarkMessageJSON: a hit's audit copy (a one-message request, a one-choice
// response) encoded by protojson and directly.
func BenchmarkMessageJSON(b *testing.B) {
	req := &providerv1.Request{RequestId: "0b6c1d2e-1f20-4a3b-9c4d-5e6f7a8b9c0d", Tenant: "default", Component: "echo",
		Messages:    []*providerv1.Message{{Role: providerv1.Role_ROLE_USER, Parts: []*providerv1.Part{{Kind: &providerv1.Part_Text{Text: strings.Repeat("a prompt of some words ", 8)}}}}},
		Temperature: 0.7, Metadata: map[string]string{"app": "bench"}, Deadline: timestamppb.Now()}
	res := &providerv1.Response{Choices: []*providerv1.Choice{{FinishReason: "stop", Content: strings.Repeat("an answer of some words ", 8)}},
		Model: "echo", Usage: &providerv1.Usage{PromptTokens: 40, CompletionTokens: 40, TotalTokens: 80}, WorkerId: "w-1",
		ProviderLatency: durationpb.New(1234567), Attempts: 1}
	for _, enc := range []struct {
		name string
		fn   func(proto.Message) ([]byte, error)
	}{{"protojson", func(m proto.Message) ([]byte, error) { return protojson.Marshal(m) }}, {"direct", func(m proto.Message) ([]byte, error) {
		b, _, err := marshalJSON(m)
		return b, err
	}}} {
		b.Run(enc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := enc.fn(req); err != nil {
					b.Fatal(err)
				}
				if _, err := enc.fn(res); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestMessageJSONEveryField: for every field reachable from Request and Response, a
// message with only that field (and the messages holding it) set is encoded as protojson
// encodes it. A field added to parley.provider.v1 that the direct encoders do not write
// fails here.
func TestMessageJSONEveryField(t *testing.T) {
	t.Parallel()
	for _, root := range []proto.Message{&providerv1.Request{}, &providerv1.Response{}} {
		var walk func(desc protoreflect.MessageDescriptor, path []protoreflect.FieldDescriptor)
		walk = func(desc protoreflect.MessageDescriptor, path []protoreflect.FieldDescriptor) {
			fields := desc.Fields()
			for i := range fields.Len() {
				fd := fields.Get(i)
				p := append(slices.Clone(path), fd)
				m := root.ProtoReflect().New()
				setPath(m, p)
				t.Run(string(desc.FullName())+"."+string(fd.Name()), func(t *testing.T) { checkLikeProtojson(t, m.Interface()) })
				if fd.Kind() == protoreflect.MessageKind && !fd.IsMap() && fd.Message().FullName().Parent() == desc.FullName().Parent() {
					walk(fd.Message(), p)
				}
			}
		}
		walk(root.ProtoReflect().Descriptor(), nil)
	}
}

// setPath sets the last field of path in m to a value that is not its default, creating
// the messages (or the list element) of the fields before it.
func setPath(m protoreflect.Message, path []protoreflect.FieldDescriptor) {
	fd := path[0]
	if len(path) > 1 {
		if fd.IsList() {
			l := m.Mutable(fd).List()
			e := l.NewElement()
			setPath(e.Message(), path[1:])
			l.Append(e)
			return
		}
		setPath(m.Mutable(fd).Message(), path[1:])
		return
	}
	switch {
	case fd.IsMap():
		mp := m.Mutable(fd).Map()
		mp.Set(protoreflect.ValueOfString("k").MapKey(), protoreflect.ValueOfString("v"))
	case fd.IsList():
		l := m.Mutable(fd).List()
		if fd.Kind() == protoreflect.MessageKind {
			l.Append(l.NewElement())
		} else {
			l.Append(sampleScalar(fd))
		}
	case fd.Kind() == protoreflect.MessageKind:
		m.Set(fd, protoreflect.ValueOfMessage(m.NewField(fd).Message()))
	default:
		m.Set(fd, sampleScalar(fd))
	}
}

// sampleScalar is a value of fd's kind other than the default.
func sampleScalar(fd protoreflect.FieldDescriptor) protoreflect.Value {
	switch fd.Kind() {
	case protoreflect.StringKind:
		return protoreflect.ValueOfString("x")
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(true)
	case protoreflect.EnumKind:
		return protoreflect.ValueOfEnum(1)
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(7)
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(7)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(7)
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(7)
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64(1.5)
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32(1.5)
	case protoreflect.BytesKind:
		return protoreflect.ValueOfBytes([]byte("x"))
	}
	panic("unexpected kind " + fd.Kind().String())
}
