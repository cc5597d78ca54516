// Command cache serves parley.cache.v1.CacheService over a shared NATS JetStream
// key-value bucket.
package main

import (
	"go.uber.org/fx"

	"github.com/parleyhq/parley/libs/platform"
	"github.com/parleyhq/parley/services/cache/internal/app"
)

func main() {
	fx.New(platform.Module("cache"), app.Module).Run()
}
