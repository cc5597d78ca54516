// Package examples holds Parley's runnable client examples, one folder each (README.md
// lists them), and the test that runs every one of them, and every command of
// docs/quickstart.md, against the stack `make up` starts.
package examples
