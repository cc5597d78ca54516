package provider_test

import (
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/parleyhq/parley/services/provider-worker/provider"
)

func readAll(t testing.TB, s string) ([]provider.Event, error) {
	t.Helper()
	r := provider.NewSSEReader(strings.NewReader(s))
	var out []provider.Event
	for {
		ev, err := r.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, ev)
	}
}

func TestSSEReader(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in string
		want     []provider.Event
		err      error
	}{
		{"two events", "data: {\"a\":1}\n\ndata: [DONE]\n\n", []provider.Event{{Data: []byte(`{"a":1}`)}, {Data: []byte("[DONE]")}}, nil},
		{"crlf, comment, typed", ": keep-alive\r\nevent: message_start\r\ndata: x\r\n\r\n", []provider.Event{{Type: "message_start", Data: []byte("x")}}, nil},
		{"multi-line data", "data: a\ndata: b\n\n", []provider.Event{{Data: []byte("a\nb")}}, nil},
		{"no space after colon", "data:x\n\n", []provider.Event{{Data: []byte("x")}}, nil},
		{"last event without blank line", "data: x", []provider.Event{{Data: []byte("x")}}, nil},
		{"other fields ignored", "id: 1\nretry: 10\n\n", nil, nil},
		{"event too large", "data: " + strings.Repeat("x", provider.MaxEventBytes+1) + "\n\n", nil, provider.ErrEventTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := readAll(t, tt.in)
			if !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("events = %q, want %q", got, tt.want)
			}
			for i := range got {
				if got[i].Type != tt.want[i].Type || string(got[i].Data) != string(tt.want[i].Data) {
					t.Fatalf("event %d = %q, want %q", i, got[i], tt.want[i])
				}
			}
		})
	}
}

// FuzzSSEReader: any input ends in events and io.EOF or an error, each event within the
// bound.
func FuzzSSEReader(f *testing.F) {
	for _, s := range []string{"data: x\n\n", "event: e\ndata: {}\n\n:c\n", "data:\r\n\r\n", "\n\n\n", "data: a\ndata: b", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		evs, _ := readAll(t, s)
		for _, ev := range evs {
			if len(ev.Data) > provider.MaxEventBytes {
				t.Fatalf("event of %d bytes", len(ev.Data))
			}
		}
	})
}
