package providertext_test

import (
	"testing"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/libs/providertext"
)

func TestInputsAndOutputs(t *testing.T) {
	req := &providerv1.Request{Messages: []*providerv1.Message{
		{Parts: []*providerv1.Part{{Kind: &providerv1.Part_Text{Text: "hi a@b.co"}}}},
		{Parts: []*providerv1.Part{
			{Kind: &providerv1.Part_ToolCall{ToolCall: &providerv1.ToolCall{Arguments: `{"x":1}`}}},
			{Kind: &providerv1.Part_ToolCall{ToolCall: &providerv1.ToolCall{}}}, // no arguments: skipped
		}},
		{Parts: []*providerv1.Part{
			{Kind: &providerv1.Part_ToolResult{ToolResult: &providerv1.ToolResult{Content: `{"ok":true}`}}},
			{Kind: &providerv1.Part_ToolResult{ToolResult: &providerv1.ToolResult{Content: "plain"}}},
		}},
	}}
	refs := providertext.Inputs(req)
	want := []struct {
		msg  int
		text string
		json bool
	}{{0, "hi a@b.co", false}, {1, `{"x":1}`, true}, {2, `{"ok":true}`, true}, {2, "plain", false}}
	if len(refs) != len(want) {
		t.Fatalf("%d refs, want %d", len(refs), len(want))
	}
	for i, w := range want {
		if refs[i].Msg != w.msg || refs[i].Text() != w.text || refs[i].JSON() != w.json {
			t.Errorf("ref %d = (%d, %q, %v), want %+v", i, refs[i].Msg, refs[i].Text(), refs[i].JSON(), w)
		}
		refs[i].Set("S" + w.text)
	}
	for i, r := range providertext.Inputs(req) {
		if r.Text() != "S"+want[i].text {
			t.Errorf("after Set, ref %d = %q", i, r.Text())
		}
	}

	resp := &providerv1.Response{Choices: []*providerv1.Choice{
		{Content: "one", ToolCalls: []*providerv1.ToolCall{{Arguments: `{"a":2}`}, {}}},
		{Content: ""},
		{Content: "three"},
	}}
	outs := providertext.Outputs(resp)
	if len(outs) != 3 || outs[0].Text != "one" || outs[0].JSON() || !outs[1].JSON() || outs[1].Call != 0 || outs[2].Choice != 2 {
		t.Fatalf("Outputs = %+v", outs)
	}
	providertext.SetOutputs(resp, outs, []string{"1", "2", "3"}, func(o providertext.Output) bool { return o.Call < 0 })
	if resp.Choices[0].Content != "1" || resp.Choices[0].ToolCalls[0].Arguments != `{"a":2}` || resp.Choices[2].Content != "3" {
		t.Fatalf("SetOutputs with a filter: %v", resp)
	}
	providertext.SetOutputs(resp, outs, []string{"1", "2", "3"}, nil)
	if resp.Choices[0].ToolCalls[0].Arguments != "2" {
		t.Fatalf("SetOutputs without a filter: %v", resp)
	}
}
