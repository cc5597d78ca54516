// Package tilt holds Parley's Tiltfile, the development image it builds, and the
// offline test of both. It has no Go code of its own: tiltfile_test.go evaluates the
// Tiltfile with go.starlark.net under Tilt's dialect, with stub builtins that record
// each call, and checks the recorded resources against services/ and deploy/.
package tilt
