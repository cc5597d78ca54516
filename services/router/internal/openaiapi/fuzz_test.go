package openaiapi

import (
	"net/http"
	"testing"

	"github.com/parleyhq/parley/libs/jsondepth"
)

// FuzzTranslate: no body makes decoding or translation panic, and every refusal is a
// 4xx in OpenAI's shape.
func FuzzTranslate(f *testing.F) {
	for _, seed := range []string{
		hello,
		`{"model":"gpt","messages":[{"role":"assistant","content":[{"type":"refusal","refusal":"no"}],"tool_calls":[{"id":"a","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"a","content":"x"}]}`,
		`{"model":"gpt","messages":[{"role":"user","content":[{"type":"text","text":"a"}]}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],"tool_choice":{"type":"function","function":{"name":"f"}}}`,
		`{"model":"gpt","messages":[{"role":"user","content":"a"}],"response_format":{"type":"json_schema","json_schema":{"name":"n","schema":{"type":"object"}}},"stop":["x"],"metadata":{"parley.scrub":"inputs"}}`,
		`{"model":"gpt","messages":[{"role":"user","content":null}],"tool_choice":[]}`,
		`{"model":1}`, `[]`, `{"messages":{}}`, ``,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if jsondepth.Exceeds(body, jsondepth.Max+bodyEnvelopeDepth) {
			return // the handler refuses these before decoding
		}
		req, e := decodeRequest(body)
		if e != nil {
			if e.Status != http.StatusBadRequest || e.Type != typeInvalidRequest {
				t.Fatalf("decode error %+v", e)
			}
			return
		}
		if _, e := translate(req, http.Header{}); e != nil && e.Status != http.StatusBadRequest {
			t.Fatalf("translate error %+v", e)
		}
	})
}
