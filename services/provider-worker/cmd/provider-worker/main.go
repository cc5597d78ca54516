// Command provider-worker answers provider requests for its components from the NATS queue
// groups parley.provider.<component>, calling the LLM providers on the router's behalf.
package main

import (
	"go.uber.org/fx"

	"github.com/parleyhq/parley/libs/platform"
	"github.com/parleyhq/parley/services/provider-worker/internal/app"
)

func main() {
	fx.New(platform.Module("provider-worker"), app.Module).Run()
}
