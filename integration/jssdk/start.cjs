// Starts the official Dapr JavaScript SDK against Parley's router the way an application
// does, then converses through the SDK's own generated gRPC client. Each step prints one
// JSON line for the Go test (integration/daprsdk, TestJavaScriptSDK) to check.
//
// Environment: PARLEY_HOST, PARLEY_HTTP_PORT, PARLEY_GRPC_PORTS (comma-separated),
// PARLEY_COMPONENT, PARLEY_TEXT; DAPR_API_TOKEN is read by the SDK itself.
"use strict";

const { DaprClient, CommunicationProtocolEnum, LogLevel } = require("@dapr/dapr");
const { toJson } = require("@bufbuild/protobuf");
const runtime = require("@dapr/dapr/proto/dapr/proto/runtime/v1/dapr_pb");

const host = process.env.PARLEY_HOST;
const component = process.env.PARLEY_COMPONENT;
const text = process.env.PARLEY_TEXT;
const logger = { level: LogLevel.Error };

function report(step, fields) {
  process.stdout.write(JSON.stringify({ step, ...fields }) + "\n");
}

async function main() {
  // The HTTP client waits for the sidecar with GET /v1.0/metadata.
  const http = new DaprClient({
    daprHost: host,
    daprPort: process.env.PARLEY_HTTP_PORT,
    communicationProtocol: CommunicationProtocolEnum.HTTP,
    logger,
  });
  await http.start();
  report("http-start", { initialized: http.daprClient.getIsInitialized() });

  for (const port of process.env.PARLEY_GRPC_PORTS.split(",")) {
    // The gRPC client waits for the sidecar with the GetMetadata RPC.
    const client = new DaprClient({
      daprHost: host,
      daprPort: port,
      communicationProtocol: CommunicationProtocolEnum.GRPC,
      logger,
    });
    await client.start();
    report("grpc-start", { port, initialized: client.daprClient.getIsInitialized() });

    // The SDK has no conversation helper yet: its generated Connect client for
    // dapr.proto.runtime.v1.Dapr serves the call, as applications use it today.
    const dapr = await client.daprClient.getClient();
    const alpha1 = await dapr.converseAlpha1({ name: component, inputs: [{ content: text }] });
    report("alpha1", { port, response: toJson(runtime.ConversationResponseSchema, alpha1) });
    const alpha2 = await dapr.converseAlpha2({
      name: component,
      inputs: [{ messages: [{ messageTypes: { case: "ofUser", value: { content: [{ text }] } } }] }],
    });
    report("alpha2", { port, response: toJson(runtime.ConversationResponseAlpha2Schema, alpha2) });
    await client.stop();
  }
  await http.stop();
}

main().then(
  () => process.exit(0),
  (err) => {
    report("error", { message: String(err && err.stack ? err.stack : err) });
    process.exit(1);
  },
);
