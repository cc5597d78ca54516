package grpcbridge

import (
	"fmt"

	"google.golang.org/grpc/mem"
)

// rawCodec passes a call's messages through unparsed: the handler decodes the requests and
// encodes the answers.
type rawCodec struct{}

// inMessage is a received message's bytes, reused for each message of a call.
type inMessage struct{ b []byte }

// outMessage is an answer's message, in buffers grpc-go frees once written.
type outMessage struct{ data mem.BufferSlice }

func (rawCodec) Name() string { return "grpcbridge" }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(*outMessage)
	if !ok {
		return nil, fmt.Errorf("grpcbridge: cannot send %T", v)
	}
	return m.data, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(*inMessage)
	if !ok {
		return fmt.Errorf("grpcbridge: cannot receive into %T", v)
	}
	m.b = m.b[:0]
	for _, buf := range data {
		m.b = append(m.b, buf.ReadOnlyData()...)
	}
	return nil
}

// callCodec is rawCodec for Client's calls. Its empty name keeps a call's content type as
// the Connect client wrote it: grpc-go names the codec in the content type when the call
// sets no subtype, and a bare "application/grpc" sets none.
type callCodec struct{ rawCodec }

func (callCodec) Name() string { return "" }
