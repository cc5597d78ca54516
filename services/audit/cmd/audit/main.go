// Command audit writes conversation audit events from JetStream into PostgreSQL and serves
// parley.audit.v1.AuditService over them.
package main

import (
	"go.uber.org/fx"

	"github.com/parleyhq/parley/libs/platform"
	"github.com/parleyhq/parley/services/audit/internal/app"
)

func main() {
	fx.New(platform.Module("audit"), app.Module).Run()
}
