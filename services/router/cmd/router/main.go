// Command router is Parley's public entry point: Dapr's Conversation API (HTTP and gRPC)
// and the native Connect API.
package main

import (
	"go.uber.org/fx"

	"github.com/parleyhq/parley/libs/platform"
	"github.com/parleyhq/parley/services/router/internal/app"
)

func main() {
	fx.New(platform.Module("router"), app.Module).Run()
}
