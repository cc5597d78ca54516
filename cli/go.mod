module github.com/parleyhq/parley/cli

go 1.26.8

replace github.com/parleyhq/parley/gen => ../gen

require (
	connectrpc.com/connect v1.21.1
	github.com/parleyhq/parley/gen v0.0.0-00010101000000-000000000000
	github.com/stretchr/testify v1.12.1
	google.golang.org/protobuf v1.36.12
)

require go.yaml.in/yaml/v3 v3.0.5
