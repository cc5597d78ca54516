package daprsdk_test

import (
	"context"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	dapr "github.com/dapr/go-sdk/client"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"
)

// sidecarWait is how an SDK waits for the sidecar before its first call, as its sources
// do it: the request (path and headers), the pause between tries, what counts as ready
// and how long it keeps trying.
type sidecarWait struct {
	sdk, version string
	// source is where the SDK does it, in the SDK's repository at version.
	source   string
	path     string
	header   http.Header
	interval time.Duration
	timeout  time.Duration
	// perTry bounds one request, as the SDK's HTTP client does.
	perTry time.Duration
	ready  func(status int) bool
}

func is2xx(status int) bool { return status >= 200 && status < 300 }

// sdkWaits are the start-up sequences of Dapr's Python, Java and .NET SDKs. Each
// polls daprd's outbound health before its first call, over HTTP on the Dapr HTTP port,
// whatever protocol the client then uses.
func sdkWaits() []sidecarWait {
	return []sidecarWait{
		{
			// dapr/python-sdk v1.18.3, dapr/clients/health.py DaprHealth.wait_for_sidecar,
			// called by DaprGrpcClient.__init__ (dapr/clients/grpc/client.py) and
			// DaprHttpClient (dapr/clients/http/client.py): urllib GET
			// {DAPR_HTTP_ENDPOINT}/v1.0/healthz/outbound with User-Agent and, when
			// DAPR_API_TOKEN is set, dapr-api-token; ready on 2xx (urllib raises on 4xx/5xx);
			// sleeps min(1 s, remaining) between tries; DAPR_HEALTH_TIMEOUT = 60 s
			// (dapr/conf/global_settings.py), then TimeoutError. urllib's own timeout is the
			// socket default (none); 60 s stands for it here.
			sdk: "python", version: "v1.18.3", source: "dapr/clients/health.py",
			path: "/v1.0/healthz/outbound",
			header: http.Header{
				"User-Agent":     {"dapr-sdk-python/1.18.3"},
				"Dapr-Api-Token": {apiToken},
			},
			interval: time.Second, timeout: 60 * time.Second, perTry: 60 * time.Second, ready: is2xx,
		},
		{
			// dapr/java-sdk v1.18.1, sdk/src/main/java/io/dapr/client/DaprClientImpl.java
			// waitForSidecar(timeoutInMilliseconds): DaprHttp.invokeApi GET
			// /v1.0/healthz/outbound over HTTP/1.1 (DaprHttpBuilder.java) with User-Agent,
			// dapr-request-id, Content-Type application/json and dapr-api-token
			// (DaprHttp.java doInvokeApi); a non-2xx status is a DaprException, retried every
			// 500 ms until the caller's timeout (the SDK's examples pass 10 000 ms); each
			// request times out after HTTP_CLIENT_READ_TIMEOUT_SECONDS = 60 s
			// (io/dapr/config/Properties.java).
			sdk: "java", version: "v1.18.1", source: "sdk/src/main/java/io/dapr/client/DaprClientImpl.java",
			path: "/v1.0/healthz/outbound",
			header: http.Header{
				"User-Agent":      {"dapr-sdk-java/v1.18.1"},
				"Dapr-Request-Id": {"5f0c6a43-3c0c-4c55-9d4e-2f7b9c1e8a61"},
				"Content-Type":    {"application/json"},
				"Dapr-Api-Token":  {apiToken},
			},
			interval: 500 * time.Millisecond, timeout: 10 * time.Second, perTry: 60 * time.Second, ready: is2xx,
		},
		{
			// dapr/dotnet-sdk v1.18.5, src/Dapr.Client/DaprClientGrpc.cs WaitForSidecarAsync:
			// CheckOutboundHealthAsync GET /v1.0/healthz/outbound on the HTTP endpoint with
			// the client's User-Agent (src/Dapr.Client/DaprClient.cs UserAgent) and the
			// dapr-api-token header when a token is configured; ready on
			// IsSuccessStatusCode (2xx); Task.Delay(500 ms) between tries, until the
			// caller's CancellationToken (no limit of its own); HttpClient's default
			// timeout of 100 s per request. The configuration providers
			// (src/Dapr.Extensions.Configuration) wait with their SidecarWaitTimeout the
			// same way; 60 s stands for the caller's limit here.
			sdk: "dotnet", version: "v1.18.5", source: "src/Dapr.Client/DaprClientGrpc.cs",
			path: "/v1.0/healthz/outbound",
			header: http.Header{
				"User-Agent":     {"dapr-sdk-dotnet/v1.18.5"},
				"Dapr-Api-Token": {apiToken},
			},
			interval: 500 * time.Millisecond, timeout: 60 * time.Second, perTry: 100 * time.Second, ready: is2xx,
		},
	}
}

// waitLikeSDK replays w against base: it polls as the SDK does and returns each try's
// status, ending with the first ready one; it fails the test when the SDK would have
// given up.
func waitLikeSDK(t *testing.T, base string, w sidecarWait, header http.Header) []int {
	t.Helper()
	client := &http.Client{Timeout: w.perTry}
	deadline := time.Now().Add(w.timeout)
	var statuses []int
	for {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, base+w.path, nil)
		require.NoError(t, err)
		req.Header = header.Clone()
		res, err := client.Do(req)
		if err == nil {
			body, readErr := io.ReadAll(res.Body)
			_ = res.Body.Close()
			require.NoError(t, readErr)
			statuses = append(statuses, res.StatusCode)
			if w.ready(res.StatusCode) {
				// daprd's ready answer: 204 and no body (dapr/dapr pkg/api/http/healthz.go).
				require.Equal(t, http.StatusNoContent, res.StatusCode)
				require.Empty(t, body)
				return statuses
			}
		}
		require.True(t, time.Now().Before(deadline), "%s SDK %s would give up after %s: statuses %v, last error %v",
			w.sdk, w.version, w.timeout, statuses, err)
		select {
		case <-t.Context().Done():
			t.Fatal(t.Context().Err())
		case <-time.After(w.interval):
		}
	}
}

// TestSDKStartup replays the start-up of Dapr's Python, Java and .NET SDKs against the
// router, with and without the API token (daprd's health API needs none), then makes the
// first call the way those SDKs make it: gRPC ConverseAlpha2 on Dapr's gRPC port.
func TestSDKStartup(t *testing.T) {
	need(t)
	t.Parallel()
	for _, w := range sdkWaits() {
		for _, withToken := range []bool{true, false} {
			name := w.sdk + " " + w.version
			header := w.header.Clone()
			if !withToken {
				name += " without token"
				header.Del("Dapr-Api-Token")
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				statuses := waitLikeSDK(t, st.URL("router"), w, header)
				// The stack is ready before tests run: the first try answers.
				require.Equal(t, []int{http.StatusNoContent}, statuses)

				client := newClient(t, "")
				text := w.sdk + " starts " + nonce(t)
				res, err := client.ConverseAlpha2(t.Context(), dapr.ConversationRequestAlpha2{Name: "echo", Inputs: inputs(input(user(text)))})
				require.NoError(t, err)
				require.Equal(t, text, res.Outputs[0].Choices[0].Message.Content)
			})
		}
	}
}

// TestHealthAPI: both health paths answer as daprd's when ready, on the router's HTTP
// port, with or without a token, and daprd's appid check holds.
func TestHealthAPI(t *testing.T) {
	need(t)
	t.Parallel()
	tests := []struct {
		name, path, token string
		wantStatus        int
		wantBody          string
	}{
		{name: "healthz", path: "/v1.0/healthz", wantStatus: 204},
		{name: "healthz with token", path: "/v1.0/healthz", token: apiToken, wantStatus: 204},
		{name: "healthz with a wrong token", path: "/v1.0/healthz", token: "x" + apiToken, wantStatus: 204},
		{name: "outbound", path: "/v1.0/healthz/outbound", wantStatus: 204},
		{name: "appid of the router", path: "/v1.0/healthz?appid=parley", wantStatus: 204},
		{name: "appid of another app", path: "/v1.0/healthz?appid=checkout", wantStatus: 500,
			wantBody: `{"errorCode":"ERR_HEALTH_APPID_NOT_MATCH","message":"dapr app-id does not match"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := send(t, http.MethodGet, st.URL("router")+tt.path, "", tt.token, "")
			require.Equal(t, tt.wantStatus, got.status, got.body)
			require.Equal(t, tt.wantBody, got.body)
		})
	}
}

// TestGetMetadataAndUnimplemented, on both gRPC ports through the Go SDK's gRPC client
// (dapr/dapr's generated stubs): GetMetadata answers with daprd's shape and the
// components of the component files; a method Parley does not serve answers
// Unimplemented; reflection describes the whole Dapr service.
func TestGetMetadataAndUnimplemented(t *testing.T) {
	need(t)
	t.Parallel()
	for _, addr := range []string{st.RouterGRPCAddr(), strings.TrimPrefix(st.URL("router"), "http://")} {
		t.Run(addr, func(t *testing.T) {
			t.Parallel()
			client := newClient(t, addr)
			md, err := client.GrpcClient().GetMetadata(t.Context(), &runtimev1pb.GetMetadataRequest{})
			require.NoError(t, err)
			require.True(t, proto.Equal(&runtimev1pb.GetMetadataResponse{
				Id:             "parley",
				RuntimeVersion: "parley",
				RegisteredComponents: []*runtimev1pb.RegisteredComponents{
					{Name: "echo", Type: "conversation.echo", Version: "v1"},
					{Name: "echo-nocache", Type: "conversation.echo"},
					{Name: "orphan", Type: "conversation.echo"},
					{Name: "primary-down", Type: "conversation.echo"},
				},
				ExtendedMetadata: map[string]string{"daprRuntimeVersion": "parley"},
			}, md), "%v", md)

			// The SDK's own metadata call reads the same answer.
			sdkMD, err := client.GetMetadata(t.Context())
			require.NoError(t, err)
			require.Equal(t, "parley", sdkMD.ID)
			require.Len(t, sdkMD.RegisteredComponents, 4)

			_, err = client.GrpcClient().GetState(t.Context(), &runtimev1pb.GetStateRequest{StoreName: "statestore", Key: "key"})
			s, ok := status.FromError(err)
			require.True(t, ok, "not a gRPC status: %v", err)
			require.Equal(t, codes.Unimplemented, s.Code(), "%v", err)
			require.Equal(t, "/dapr.proto.runtime.v1.Dapr/GetState is not implemented: Parley serves Dapr's conversation API (ConverseAlpha1, ConverseAlpha2) and GetMetadata", s.Message())

			methods := reflectDaprMethods(t, addr)
			require.Len(t, methods, 72, "dapr/dapr v1.18.3's Dapr service")
			for _, m := range []string{"ConverseAlpha1", "ConverseAlpha2", "GetMetadata", "GetState", "PublishEvent", "SubscribeTopicEventsAlpha1", "Shutdown"} {
				require.True(t, slices.Contains(methods, m), "reflection lacks %s", m)
			}
		})
	}
}

// reflectDaprMethods asks the server's reflection for the file of
// dapr.proto.runtime.v1.Dapr and lists the service's methods.
func reflectDaprMethods(t *testing.T, addr string) []string {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	require.NoError(t, err)
	require.NoError(t, stream.Send(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: "dapr.proto.runtime.v1.Dapr"},
	}))
	res, err := stream.Recv()
	require.NoError(t, err)
	require.NoError(t, stream.CloseSend())
	var methods []string
	for _, raw := range res.GetFileDescriptorResponse().GetFileDescriptorProto() {
		fd := &descriptorpb.FileDescriptorProto{}
		require.NoError(t, proto.Unmarshal(raw, fd))
		for _, svc := range fd.GetService() {
			if fd.GetPackage() == "dapr.proto.runtime.v1" && svc.GetName() == "Dapr" {
				for _, m := range svc.GetMethod() {
					methods = append(methods, m.GetName())
				}
			}
		}
	}
	return methods
}
