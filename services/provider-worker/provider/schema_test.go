package provider_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/parleyhq/parley/services/provider-worker/provider"
)

func TestConvertResponseFormat(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		give       string
		wantName   string
		wantDesc   string
		wantStrict bool
		wantSchema string
		wantErr    string
	}{
		{
			name: "defaults",
			give: `{"type":"object"}`, wantName: "response",
			wantSchema: `{"type":"object","additionalProperties":false}`,
		},
		{
			name: "name, description, strict, reduced schema",
			give: `{"type":"object","name":"w","description":"d","strict":true,"$schema":"x","additionalProperties":true,
				"required":["a",1],"properties":{"a":{"type":"string","enum":["x",2,true],"pattern":"p"},
				"b":{"type":"array","items":{"type":"object","properties":{}}}}}`,
			wantName: "w", wantDesc: "d", wantStrict: true,
			wantSchema: `{"type":"object","description":"d","additionalProperties":true,"required":["a"],
				"properties":{"a":{"type":"string","enum":["x","2","true"]},
				"b":{"type":"array","items":{"type":"object","additionalProperties":false}}}}`,
		},
		{name: "no type", give: `{"properties":{}}`, wantErr: "schema type is required and must be a string"},
		{name: "type not a string", give: `{"type":["object"]}`, wantErr: "schema type is required and must be a string"},
		{name: "property without type", give: `{"type":"object","properties":{"a":{}}}`, wantErr: `convert property "a"`},
		{name: "property not a map", give: `{"type":"object","properties":{"a":1}}`, wantErr: `property "a" must be a map`},
		{name: "items without type", give: `{"type":"array","items":{}}`, wantErr: "convert array items"},
		{
			name:    "too deep",
			give:    strings.Repeat(`{"type":"array","items":`, 70) + `{"type":"string"}` + strings.Repeat(`}`, 70),
			wantErr: "nests deeper than 64 levels",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var s structpb.Struct
			require.NoError(t, s.UnmarshalJSON([]byte(tt.give)))
			got, err := provider.ConvertResponseFormat(&s)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				require.Nil(t, got)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.wantName, got.Name)
			require.Equal(t, tt.wantDesc, got.Description)
			require.Equal(t, tt.wantStrict, got.Strict)
			data, err := json.Marshal(got.Schema)
			require.NoError(t, err)
			require.JSONEq(t, tt.wantSchema, string(data))
		})
	}
	got, err := provider.ConvertResponseFormat(nil)
	require.NoError(t, err)
	require.Nil(t, got)
}
