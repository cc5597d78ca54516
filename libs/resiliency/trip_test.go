package resiliency_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/parleyhq/parley/libs/resiliency"
)

func TestTripEval(t *testing.T) {
	t.Parallel()
	counts := resiliency.Counts{
		Requests: 10, TotalSuccesses: 4, TotalFailures: 6, ConsecutiveSuccesses: 0, ConsecutiveFailures: 3,
	}
	tests := []struct {
		expr string
		want bool
	}{
		{resiliency.DefaultTrip, false},
		{"consecutiveFailures > 2", true},
		{"consecutiveFailures >= 3", true},
		{"consecutiveFailures < 3", false},
		{"consecutiveFailures <= 3", true},
		{"consecutiveFailures == 3", true},
		{"consecutiveFailures != 3", false},
		{"requests > 5 && totalFailures > 5", true},
		{"requests > 50 && totalFailures > 5", false},
		{"requests > 50 || totalFailures > 5", true},
		{"!(requests > 50)", true},
		{"!!(requests > 50)", false},
		{"! ( requests>50 )", true},
		// && binds tighter than ||.
		{"requests > 50 && totalFailures > 5 || consecutiveFailures > 2", true},
		{"requests > 50 && (totalFailures > 5 || consecutiveFailures > 2)", false},
		// Comparisons are left-associative and compare bools with == and !=.
		{"(requests > 5) == (totalFailures > 5)", true},
		{"(requests > 5) != (totalFailures > 50)", true},
		{"totalSuccesses == 4 && consecutiveSuccesses == 0", true},
		{"10 < requests", false},
		{"0 == 0", true},
		{"\tconsecutiveFailures\n>\r\n2 ", true},
		{"requests > 9223372036854775807", false},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			t.Parallel()
			trip, err := resiliency.ParseTrip(tt.expr)
			require.NoError(t, err)
			require.Equal(t, tt.want, trip.Eval(counts))
			require.Equal(t, tt.expr, trip.String())
		})
	}
}

func TestParseTripErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		expr string
		want string
	}{
		{"", "empty expression"},
		{"   ", "empty expression"},
		{"failures > 3", `offset 0: unknown variable "failures"`},
		{"consecutiveFailures", "must be a condition (of type bool), not a number"},
		{"5", "must be a condition (of type bool), not a number"},
		{"consecutiveFailures > 5u", "offset 22: only decimal integer literals are supported"},
		{"consecutiveFailures > 0x5", "offset 22: only decimal integer literals are supported"},
		{"consecutiveFailures > 5.0", "offset 22: only decimal integer literals are supported"},
		{"consecutiveFailures > -1", `offset 22: unsupported character '-'`},
		{"requests * 2 > 5", `offset 9: unsupported character '*'`},
		{"requests > 5 ? true : false", `offset 13: unsupported character '?'`},
		{`requests > "5"`, `offset 11: unsupported character '"'`},
		{"requests > 5 && true", `offset 16: unknown variable "true"`},
		{"size(requests) > 1", `offset 0: unknown variable "size"`},
		{"requests > 5 &", `offset 13: unsupported character '&'`},
		{"requests = 5", `offset 9: unsupported character '='`},
		{"requests > 5 > 1", "offset 13: > compares numbers, got bool and int"},
		{"requests && 1", "offset 9: && needs conditions on both sides, got int and int"},
		{"requests > 1 || 2", "offset 13: || needs conditions on both sides, got bool and int"},
		{"!requests", "offset 0: ! needs a condition, got int"},
		{"!requests > 1", "offset 0: ! needs a condition, got int"},
		{"requests == (requests > 1)", "offset 9: == compares values of one type, got int and bool"},
		{"(requests > 1", "offset 13: unexpected end of expression"},
		{"requests > 1)", `offset 12: unexpected ")"`},
		{"requests >", "offset 10: unexpected end of expression"},
		{"requests requests", `offset 9: unexpected "requests"`},
		{"requests > 99999999999999999999", "offset 11: integer 99999999999999999999 out of range"},
		{"requests > 1 // comment", `offset 13: unsupported character '/'`},
		{"requêtes > 1", `offset 0: unknown variable "requ"`},
		{"é", `offset 0: unsupported character 'é'`},
		{"requests > 5 == totalFailures > 5", "offset 13: == compares values of one type, got bool and int"},
		{strings.Repeat("(", 100) + "requests > 1" + strings.Repeat(")", 100), "nested deeper than 64 levels"},
		{strings.Repeat("!", 100) + "(requests > 1)", "nested deeper than 64 levels"},
		{"requests > " + strings.Repeat("1", 1100), "longer than 1024 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			t.Parallel()
			trip, err := resiliency.ParseTrip(tt.expr)
			require.Nil(t, trip)
			require.ErrorContains(t, err, tt.want)
		})
	}
}
