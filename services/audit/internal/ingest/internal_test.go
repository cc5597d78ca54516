package ingest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/parleyhq/parley/services/audit/internal/store"
)

func TestRowFault(t *testing.T) {
	t.Parallel()
	pgErr := func(code string) error {
		return fmt.Errorf("insert batch: %w", &pgconn.PgError{Code: code, Message: "x"})
	}
	tests := []struct {
		name string
		give error
		want bool
	}{
		{name: "check violation", give: pgErr("23514"), want: true},
		{name: "not null violation", give: pgErr("23502"), want: true},
		{name: "invalid json text", give: pgErr("22P02"), want: true},
		{name: "untranslatable character", give: pgErr("22P05"), want: true},
		{name: "row too big", give: pgErr("54000"), want: true},
		{name: "invalid event", give: fmt.Errorf("insert batch: %w", store.ErrInvalidEvent), want: true},
		{name: "admin shutdown", give: pgErr("57P01"), want: false},
		{name: "database not accepting connections", give: pgErr("55000"), want: false},
		{name: "disk full", give: pgErr("53100"), want: false},
		{name: "permission denied", give: pgErr("42501"), want: false},
		{name: "undefined table", give: pgErr("42P01"), want: false},
		{name: "serialization failure", give: pgErr("40001"), want: false},
		{name: "connection refused", give: errors.New("dial tcp 127.0.0.1:5432: connect: connection refused"), want: false},
		{name: "deadline", give: fmt.Errorf("insert batch: %w", context.DeadlineExceeded), want: false},
		{name: "empty code", give: pgErr(""), want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, rowFault(tt.give))
		})
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	tests := []struct {
		n       int
		ceiling time.Duration
		want    time.Duration
	}{
		{n: 0, ceiling: maxBackoff, want: minBackoff},
		{n: 1, ceiling: maxBackoff, want: minBackoff},
		{n: 2, ceiling: maxBackoff, want: 200 * time.Millisecond},
		{n: 4, ceiling: maxBackoff, want: 800 * time.Millisecond},
		{n: 7, ceiling: maxBackoff, want: maxBackoff},
		{n: 1000, ceiling: maxBackoff, want: maxBackoff},
		{n: 3, ceiling: 300 * time.Millisecond, want: 300 * time.Millisecond},
		{n: 1, ceiling: 50 * time.Millisecond, want: 50 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d_%s", tt.n, tt.ceiling), func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, backoff(tt.n, tt.ceiling))
		})
	}
}

func TestHeaderValue(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		give string
		n    int
		want string
	}{
		{name: "short", give: "bad json", n: 16, want: "bad json"},
		{name: "newlines", give: "a\r\nb\nc", n: 16, want: "a  b c"},
		{name: "cut", give: strings.Repeat("x", 20), n: 8, want: "xxxxxxxx…"},
		{name: "cut before a multi-byte rune", give: "abcdefé", n: 7, want: "abcdef…"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, headerValue(tt.give, tt.n))
		})
	}
}
