package fakeprovider

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Completion is a chat.completion object, or a chat.completion.chunk of a stream.
type Completion struct {
	ID      string   `json:"id"`
	Object  string   `json:"object"`
	Created int64    `json:"created"`
	Model   string   `json:"model"`
	Choices []Choice `json:"choices"`
	Usage   *Usage   `json:"usage,omitempty"`
}

// Choice is one answer: Message in a completion, Delta in a chunk.
type Choice struct {
	Index        int      `json:"index"`
	Message      *Message `json:"message,omitempty"`
	Delta        *Message `json:"delta,omitempty"`
	FinishReason *string  `json:"finish_reason"`
}

// Message is an assistant message or the delta of one.
type Message struct {
	Role      string     `json:"role,omitempty"`
	Content   *string    `json:"content,omitempty"`
	ToolCalls []ToolCall `json:"tool_calls,omitempty"`
}

// ToolCall is a function call; Index places a streamed call's fragments.
type ToolCall struct {
	Index    *int         `json:"index,omitempty"`
	ID       string       `json:"id,omitempty"`
	Type     string       `json:"type,omitempty"`
	Function FunctionCall `json:"function"`
}

// FunctionCall names the function and carries its JSON arguments.
type FunctionCall struct {
	Name      string `json:"name,omitempty"`
	Arguments string `json:"arguments"`
}

// Usage is the token usage of an answer.
type Usage struct {
	PromptTokens        int                  `json:"prompt_tokens"`
	CompletionTokens    int                  `json:"completion_tokens"`
	TotalTokens         int                  `json:"total_tokens"`
	PromptTokensDetails *PromptTokensDetails `json:"prompt_tokens_details,omitempty"`
}

// PromptTokensDetails details the prompt tokens.
type PromptTokensDetails struct {
	CachedTokens int `json:"cached_tokens"`
}

// Stream is a streamed answer put back together by Collect.
type Stream struct {
	// ID and Model are those of the first chunk that names them.
	ID    string
	Model string
	// Content is the concatenated content of choice 0.
	Content string
	// ToolCalls are choice 0's tool calls, their argument fragments joined.
	ToolCalls []ToolCall
	// FinishReason is the last finish reason sent.
	FinishReason string
	// Usage is the usage chunk's, when the request asked for one.
	Usage *Usage
	// Chunks counts the data events before [DONE].
	Chunks int
	// Done reports that the [DONE] event arrived.
	Done bool
}

// maxEventLine bounds one line of the event stream.
const maxEventLine = 1 << 20

// errEventTooLong reports a line over maxEventLine.
var errEventTooLong = errors.New("event line too long")

// Collect reads a chat completions event stream (server-sent events: "data: <chunk>"
// lines, events separated by a blank line, comments and other fields ignored) until the
// [DONE] event or the end of r, and assembles choice 0.
func Collect(r io.Reader) (*Stream, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxEventLine)
	st := &Stream{}
	var data [][]byte
	dispatch := func() error {
		if len(data) == 0 {
			return nil
		}
		payload := bytes.Join(data, []byte("\n"))
		data = data[:0]
		if string(payload) == "[DONE]" {
			st.Done = true
			return nil
		}
		var c Completion
		if err := json.Unmarshal(payload, &c); err != nil {
			return fmt.Errorf("event %d: %w", st.Chunks+1, err)
		}
		st.Chunks++
		st.merge(&c)
		return nil
	}
	for !st.Done && sc.Scan() {
		line := sc.Bytes()
		switch {
		case len(line) == 0:
			if err := dispatch(); err != nil {
				return nil, err
			}
		case line[0] == ':':
		default:
			field, value, _ := bytes.Cut(line, []byte(":"))
			if string(field) != "data" {
				continue
			}
			value = bytes.TrimPrefix(value, []byte(" "))
			data = append(data, append([]byte(nil), value...))
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, errEventTooLong
		}
		return nil, fmt.Errorf("read events: %w", err)
	}
	if !st.Done {
		if err := dispatch(); err != nil {
			return nil, err
		}
	}
	return st, nil
}

func (st *Stream) merge(c *Completion) {
	if st.ID == "" {
		st.ID = c.ID
	}
	if st.Model == "" {
		st.Model = c.Model
	}
	if c.Usage != nil {
		st.Usage = c.Usage
	}
	var content strings.Builder
	content.WriteString(st.Content)
	for _, ch := range c.Choices {
		if ch.Index != 0 {
			continue
		}
		if ch.FinishReason != nil {
			st.FinishReason = *ch.FinishReason
		}
		d := ch.Delta
		if d == nil {
			d = ch.Message
		}
		if d == nil {
			continue
		}
		if d.Content != nil {
			content.WriteString(*d.Content)
		}
		for _, tc := range d.ToolCalls {
			st.mergeToolCall(tc)
		}
	}
	st.Content = content.String()
}

// maxToolCalls bounds the tool calls one stream may build, whatever index it names.
const maxToolCalls = 128

func (st *Stream) mergeToolCall(tc ToolCall) {
	i := len(st.ToolCalls)
	if tc.Index != nil {
		i = *tc.Index
	}
	if i < 0 || i >= maxToolCalls {
		return
	}
	for len(st.ToolCalls) <= i {
		st.ToolCalls = append(st.ToolCalls, ToolCall{})
	}
	cur := &st.ToolCalls[i]
	if tc.ID != "" {
		cur.ID = tc.ID
	}
	if tc.Type != "" {
		cur.Type = tc.Type
	}
	if tc.Function.Name != "" {
		cur.Function.Name = tc.Function.Name
	}
	cur.Function.Arguments += tc.Function.Arguments
}
