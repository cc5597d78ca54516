module github.com/parleyhq/parley/services/pii-scrubber

go 1.26.8

replace (
	github.com/parleyhq/parley/gen => ../../gen
	github.com/parleyhq/parley/libs => ../../libs
)

require (
	connectrpc.com/connect v1.21.1 // indirect
	github.com/prometheus/client_golang v1.25.0 // indirect
	github.com/stretchr/testify v1.12.1 // indirect
	go.uber.org/dig v1.19.0 // indirect
	go.uber.org/fx v1.24.0 // indirect
	go.uber.org/multierr v1.10.0 // indirect
	go.uber.org/zap v1.26.0 // indirect
	golang.org/x/sys v0.48.0 // indirect
	google.golang.org/protobuf v1.36.12 // indirect
)
