module github.com/parleyhq/parley/services/cache

go 1.26.8

replace (
	github.com/parleyhq/parley/gen => ../../gen
	github.com/parleyhq/parley/libs => ../../libs
)
