package jsondepth_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/parleyhq/parley/libs/jsondepth"
)

func nested(depth int) string {
	return strings.Repeat(`{"a":[`, depth/2) + strings.Repeat("[", depth%2) + `1` + strings.Repeat("]", depth%2) + strings.Repeat(`]}`, depth/2)
}

func TestDepth(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		json  string
		limit int
		want  bool
	}{
		{name: "scalar", json: `1`, limit: 0, want: false},
		{name: "empty object at limit 1", json: `{}`, limit: 1, want: false},
		{name: "empty object over limit 0", json: `{}`, limit: 0, want: true},
		{name: "at the limit", json: nested(jsondepth.Max), limit: jsondepth.Max, want: false},
		{name: "one over", json: nested(jsondepth.Max + 1), limit: jsondepth.Max, want: true},
		{name: "deep but flat siblings", json: "[" + strings.Repeat("[1],", 1000) + "[1]]", limit: 2, want: false},
		{name: "brackets in strings", json: `{"a":"[[[[{{{{\"[[["}`, limit: 1, want: false},
		{name: "4,900 levels", json: nested(4900), limit: jsondepth.Max, want: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, jsondepth.Exceeds(tc.json, tc.limit), "text")
			require.Equal(t, tc.want, jsondepth.Exceeds([]byte(tc.json), tc.limit), "bytes")
			var v structpb.Value
			require.NoError(t, v.UnmarshalJSON([]byte(tc.json)))
			require.Equal(t, tc.want, jsondepth.ValueExceeds(&v, tc.limit), "Value")
			if s := v.GetStructValue(); s != nil {
				require.Equal(t, tc.want, jsondepth.StructExceeds(s, tc.limit), "Struct")
			}
			require.True(t, json.Valid([]byte(tc.json)))
		})
	}
	require.False(t, jsondepth.StructExceeds(nil, 0))
}
