// Command pii-scrubber finds and replaces personally identifiable information in texts.
package main

import (
	"go.uber.org/fx"

	"github.com/parleyhq/parley/libs/platform"
	"github.com/parleyhq/parley/services/pii-scrubber/internal/app"
)

func main() {
	fx.New(platform.Module("pii-scrubber"), app.Module).Run()
}
