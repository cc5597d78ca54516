package command

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"

	conversationv1 "github.com/parleyhq/parley/gen/pb/parley/conversation/v1"
	"github.com/parleyhq/parley/gen/pb/parley/conversation/v1/conversationv1connect"
)

// maxStdinBytes bounds a message read from stdin.
const maxStdinBytes = 16 << 20

// converseCall is a parsed `parley converse`: the request and how to run and print it.
type converseCall struct {
	req    *conversationv1.ConverseRequest
	stream bool
	json   bool
}

// parseConverse turns the arguments of `parley converse` into a request. The message is
// the positional arguments joined by spaces; with none, or with "-", it is read from stdin.
func parseConverse(g *global, args []string, io IO) (converseCall, error) {
	fs := flag.NewFlagSet("parley converse", flag.ContinueOnError)
	var (
		component, system, scrub, scrubMode string
		temperature                         optionalFloat
		call                                converseCall
		bypassCache                         bool
	)
	fs.StringVar(&component, "c", "", "the component (its metadata.name); required")
	fs.StringVar(&component, "component", "", "same as -c")
	fs.StringVar(&system, "system", "", "a system message sent before the text")
	fs.Var(&temperature, "temperature", "sampling temperature, 0 to 2 (default: the provider's)")
	fs.StringVar(&scrub, "scrub", "", "scrub PII: inputs, outputs or both (inputs,outputs)")
	fs.StringVar(&scrubMode, "scrub-mode", "", "how -scrub writes what it finds: replace (default) or tokenize")
	fs.BoolVar(&bypassCache, "bypass-cache", false, "neither read nor write the response cache")
	fs.BoolVar(&call.stream, "stream", false, "stream the answer (ConverseStream), printing chunks as they arrive")
	fs.BoolVar(&call.json, "json", false, "print the response as JSON (with -stream: one JSON document per chunk and line)")
	rest, err := parseCommand(fs, g, "parley converse -c COMPONENT [flags] [TEXT... | -]  (no TEXT or -: read stdin)", args, io)
	if err != nil {
		return converseCall{}, err
	}
	call.json = call.json || g.json()
	if component == "" {
		return converseCall{}, fmt.Errorf("%w: -c COMPONENT is required (parley components lists them)", errUsage)
	}
	text, err := message(rest, io)
	if err != nil {
		return converseCall{}, err
	}
	req := &conversationv1.ConverseRequest{Component: component, Temperature: temperature.value}
	if system != "" {
		req.Messages = append(req.Messages, &conversationv1.Message{Role: conversationv1.Role_ROLE_SYSTEM, Content: system})
	}
	req.Messages = append(req.Messages, &conversationv1.Message{Role: conversationv1.Role_ROLE_USER, Content: text})
	if req.Scrub, err = ParseScrub(scrub, scrubMode); err != nil {
		return converseCall{}, fmt.Errorf("%w: %w", errUsage, err)
	}
	if bypassCache {
		req.CacheMode = conversationv1.CacheMode_CACHE_MODE_BYPASS
	}
	call.req = req
	return call, nil
}

// message is the text to send: the arguments, or stdin when there are none or just "-".
func message(args []string, io IO) (string, error) {
	if len(args) > 0 && (len(args) != 1 || args[0] != "-") {
		text := strings.Join(args, " ")
		if strings.TrimSpace(text) == "" {
			return "", fmt.Errorf("%w: the message is empty", errUsage)
		}
		return text, nil
	}
	if f, ok := io.Stdin.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			_, _ = fmt.Fprintln(io.Stderr, "parley: reading the message from stdin; end it with Ctrl-D")
		}
	}
	b, err := readAtMost(io.Stdin, maxStdinBytes)
	if err != nil {
		return "", fmt.Errorf("read stdin: %w", err)
	}
	text := strings.TrimRight(string(b), "\r\n")
	if strings.TrimSpace(text) == "" {
		return "", fmt.Errorf("%w: no message: give it as arguments or on stdin", errUsage)
	}
	return text, nil
}

func readAtMost(r io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("more than %d bytes", limit)
	}
	return b, nil
}

// ParseScrub parses -scrub (inputs, outputs, both or inputs,outputs; empty means no
// scrubbing) and -scrub-mode (replace or tokenize; empty means replace).
func ParseScrub(what, mode string) (*conversationv1.Scrub, error) {
	if what == "" {
		if mode != "" {
			return nil, errors.New("-scrub-mode needs -scrub")
		}
		return nil, nil
	}
	s := &conversationv1.Scrub{}
	for part := range strings.SplitSeq(what, ",") {
		switch strings.ToLower(strings.TrimSpace(part)) {
		case "inputs":
			s.Inputs = true
		case "outputs":
			s.Outputs = true
		case "both":
			s.Inputs, s.Outputs = true, true
		default:
			return nil, fmt.Errorf("-scrub: want inputs, outputs or both, got %q", what)
		}
	}
	switch strings.ToLower(mode) {
	case "", "replace":
	case "tokenize":
		s.Mode = conversationv1.ScrubMode_SCRUB_MODE_TOKENIZE
	default:
		return nil, fmt.Errorf("-scrub-mode: want replace or tokenize, got %q", mode)
	}
	return s, nil
}

// optionalFloat is a float flag that tells whether it was given.
type optionalFloat struct{ value *float64 }

func (f *optionalFloat) String() string {
	if f == nil || f.value == nil {
		return ""
	}
	return strconv.FormatFloat(*f.value, 'g', -1, 64)
}

func (f *optionalFloat) Set(s string) error {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return fmt.Errorf("want a number, got %q", s)
	}
	f.value = proto.Float64(v)
	return nil
}

// converse runs `parley converse`.
func converse(ctx context.Context, g *global, args []string, io IO) error {
	call, err := parseConverse(g, args, io)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	client := conversationv1connect.NewConversationServiceClient(httpClient(g, io.HTTPClient), g.router, connectOptions(g)...)
	if !call.stream {
		resp, err := client.Converse(ctx, call.req)
		if err != nil {
			return callError(g, "converse", err)
		}
		if call.json {
			return printer{w: io.Stdout, json: true}.protoJSON(resp)
		}
		if err := writeAnswer(io.Stdout, resp); err != nil {
			return err
		}
		_, _ = fmt.Fprintln(io.Stderr, summary(resp.GetRequestId(), resp.GetModel(), resp.GetUsage(), resp.GetCacheHit()))
		return nil
	}
	stream, err := client.ConverseStream(ctx, &conversationv1.ConverseStreamRequest{Request: call.req})
	if err != nil {
		return callError(g, "converse", err)
	}
	defer func() { _ = stream.Close() }()
	sp := &streamPrinter{w: io.Stdout, json: call.json}
	for stream.Receive() {
		if err := sp.chunk(stream.Msg()); err != nil {
			return err
		}
	}
	if err := stream.Err(); err != nil {
		_ = sp.end()
		return callError(g, "converse", err)
	}
	if err := sp.end(); err != nil {
		return err
	}
	if !call.json {
		_, _ = fmt.Fprintln(io.Stderr, summary(sp.requestID, "", sp.usage, sp.cacheHit))
	}
	return nil
}
