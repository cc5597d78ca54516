package daprapi

import (
	"context"
	"fmt"

	"connectrpc.com/connect"

	"github.com/parleyhq/parley/gen/pb/dapr/proto/runtime/v1/runtimev1connect"
)

// served tells the methods of dapr.proto.runtime.v1.Dapr the router implements. The
// generated handler knows the whole service, so every other method is routed (not a 404
// from the mux, which gRPC clients would see as a transport error) and answers a real
// Unimplemented status.
func served(procedure string) bool {
	switch procedure {
	case runtimev1connect.DaprConverseAlpha1Procedure, runtimev1connect.DaprConverseAlpha2Procedure,
		runtimev1connect.DaprGetMetadataProcedure:
		return true
	}
	return false
}

// Unimplemented is a handler interceptor for the Dapr service: a method the router does
// not serve answers Unimplemented with a message that says what Parley serves, instead
// of the generated "... is not implemented".
type Unimplemented struct{}

var _ connect.Interceptor = Unimplemented{}

func unimplemented(procedure string) error {
	return connect.NewError(connect.CodeUnimplemented, fmt.Errorf(
		"%s is not implemented: Parley serves Dapr's conversation API (ConverseAlpha1, ConverseAlpha2) and GetMetadata", procedure))
}

// WrapUnary refuses unary methods the router does not serve.
func (Unimplemented) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if p := req.Spec().Procedure; !req.Spec().IsClient && !served(p) {
			return nil, unimplemented(p)
		}
		return next(ctx, req)
	}
}

// WrapStreamingClient leaves clients alone.
func (Unimplemented) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

// WrapStreamingHandler refuses streaming methods: the router serves none.
func (Unimplemented) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		if p := conn.Spec().Procedure; !served(p) {
			return unimplemented(p)
		}
		return next(ctx, conn)
	}
}
