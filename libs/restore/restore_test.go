package restore

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

var mapping = map[string]string{
	"<EMAIL_ADDRESS_1>": "bob@example.com",
	"<EMAIL_ADDRESS_2>": "alice@example.com",
	"<CREDIT_CARD_1>":   "4111 1111 1111 1111",
	"<US_SSN_12>":       "123-45-6789",
	"not a token":       "ignored",
}

func TestText(t *testing.T) {
	t.Parallel()
	r := New(mapping)
	tests := []struct {
		name string
		give string
		want string
	}{
		{"tokens", "Wrote to <EMAIL_ADDRESS_1> and <EMAIL_ADDRESS_2>.", "Wrote to bob@example.com and alice@example.com."},
		{"adjacent", "<EMAIL_ADDRESS_1><CREDIT_CARD_1>", "bob@example.com4111 1111 1111 1111"},
		{"two-digit number", "ssn <US_SSN_12>", "ssn 123-45-6789"},
		{"unknown token kept", "<EMAIL_ADDRESS_3> and <IP_1>", "<EMAIL_ADDRESS_3> and <IP_1>"},
		{"plain placeholder kept", "<EMAIL_ADDRESS>", "<EMAIL_ADDRESS>"},
		{"lookalikes kept", "<EMAIL_ADDRESS_1 > <email_address_1> <<EMAIL_ADDRESS_1>>", "<EMAIL_ADDRESS_1 > <email_address_1> <bob@example.com>"},
		{"nothing", "no tokens here", "no tokens here"},
		{"html", "<b>hi</b> <EMAIL_ADDRESS_2>", "<b>hi</b> alice@example.com"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, r.Text(tt.give))
		})
	}
}

func TestStream(t *testing.T) {
	t.Parallel()
	r := New(mapping)
	text := "Hi <EMAIL_ADDRESS_1>, your card <CREDIT_CARD_1> and <IP_9> and <b>bold</b> and é <US_SSN_12>"
	want := r.Text(text)
	for size := 1; size <= len(text); size++ {
		checkStream(t, r, text, want, size)
	}
}

func checkStream(t testing.TB, r *Restorer, text, want string, size int) {
	t.Helper()
	st := r.Stream()
	var b strings.Builder
	for i := 0; i < len(text); i += size {
		b.WriteString(st.Write(text[i:min(len(text), i+size)]))
	}
	b.WriteString(st.Flush())
	require.Equal(t, want, b.String(), "pieces of %d", size)
}

// FuzzStream checks that any chunking restores like Text.
//
//	go test -run '^$' -fuzz FuzzStream -fuzztime 30s ./libs/restore/
func FuzzStream(f *testing.F) {
	f.Add("Hi <EMAIL_ADDRESS_1>, <CREDIT_CARD_1><US_SSN_12> <<EMAIL_ADDRESS_2>", uint8(3))
	f.Add("<<<<EMAIL_ADDRESS_1", uint8(1))
	r := New(mapping)
	f.Fuzz(func(t *testing.T, text string, size uint8) {
		checkStream(t, r, text, r.Text(text), 1+int(size))
	})
}

func BenchmarkText(b *testing.B) {
	r := New(mapping)
	text := strings.Repeat("The answer mentions <EMAIL_ADDRESS_1> and <CREDIT_CARD_1> once more. ", 30)
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		_ = r.Text(text)
	}
}
