// Package daprsdk holds no code, only a compatibility suite: it drives the router with the
// official Dapr Go SDK (github.com/dapr/go-sdk) and plain HTTP, starts the official
// JavaScript SDK (@dapr/dapr, integration/jssdk) with Node, and replays the start-up of the
// Python, Java and .NET SDKs, against a constellation of its own, with DAPR_API_TOKEN set.
//
// It is a package of its own because the SDK links Dapr's generated protobuf types, whose
// full names clash with Parley's copies in gen/pb/dapr: no package here may import those
// or anything that does.
package daprsdk
