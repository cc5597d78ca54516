module github.com/parleyhq/parley/tilt

go 1.26.8

require (
	github.com/stretchr/testify v1.12.1
	go.starlark.net v0.0.0-20260908191801-89a6a09411d5
	go.yaml.in/yaml/v3 v3.0.5
)

require golang.org/x/sys v0.42.0 // indirect
