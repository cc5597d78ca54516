#!/usr/bin/env bash
# Talks to Parley with grpcurl and server reflection: no .proto file, no generated code.
# Lists the router's services, converses over Dapr's alpha2 with scrubbing, and streams
# an answer from the native API. Prints one line per step and exits 1 when an answer is
# not the echo component's (README.md shows them).
#
#   PARLEY_GRPC_ADDR  the router's Dapr gRPC port (default localhost:50001)
#   PARLEY_ADDR       the router's main port, which serves gRPC too (default localhost:3500)
#   DAPR_API_TOKEN    sent as dapr-api-token when set
#   GRPCURL           the grpcurl binary (default: grpcurl on PATH; make .bin/grpcurl builds it)
set -euo pipefail

grpc_addr=${PARLEY_GRPC_ADDR:-localhost:50001}
addr=${PARLEY_ADDR:-localhost:3500}
grpcurl=${GRPCURL:-grpcurl}
# The router's public ports speak plaintext HTTP/2 (h2c) on loopback: -plaintext.
args=(-plaintext)
if [[ -n ${DAPR_API_TOKEN:-} ]]; then
  args+=(-H "dapr-api-token: $DAPR_API_TOKEN")
fi

failed=0
# check LABEL GOT WANT prints GOT and remembers a mismatch.
check() {
  printf '%-9s %s\n' "$1:" "$2"
  if [[ $2 != "$3" ]]; then
    echo "$1: got '$2', want '$3'" >&2
    failed=1
  fi
}

# field NAME prints the JSON string values of NAME in grpcurl's output, one a line, with
# the escapes grpcurl writes for < and > undone.
field() {
  sed -n "s/.*\"$1\": \"\(.*\)\".*/\1/p" | sed 's/\\u003c/</g; s/\\u003e/>/g'
}

# 1. Reflection: the router lists its services; the two used below must be among them.
services=$("$grpcurl" "${args[@]}" "$grpc_addr" list)
for service in dapr.proto.runtime.v1.Dapr parley.conversation.v1.ConversationService; do
  check listed "$(grep -x "$service" <<<"$services" || true)" "$service"
done

# 2. Dapr alpha2: scrub the input before the provider sees it, and the answer.
answer=$("$grpcurl" "${args[@]}" -d @ "$grpc_addr" dapr.proto.runtime.v1.Dapr/ConverseAlpha2 <<'JSON' | field content
{"name": "echo",
 "inputs": [{"messages": [{"ofUser": {"content": [{"text": "my email is test@test.com"}]}}], "scrubPii": true}],
 "scrubPii": true}
JSON
)
check alpha2 "$answer" "my email is <EMAIL_ADDRESS>"

# 3. The native API's server stream, over gRPC on the main port: the content deltas joined.
streamed=$("$grpcurl" "${args[@]}" -d @ "$addr" parley.conversation.v1.ConversationService/ConverseStream <<'JSON' | field contentDelta | tr -d '\n'
{"request": {"component": "echo", "messages": [{"role": "ROLE_USER", "content": "hello from grpcurl"}]}}
JSON
)
check stream "$streamed" "hello from grpcurl"

exit $failed
