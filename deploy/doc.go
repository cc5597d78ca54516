// Package deploy holds Parley's Kubernetes manifests (kustomize bases and overlays)
// and the offline tests that render and check them. It has no Go code of its own:
// manifests_test.go renders every overlay with krusty, strict-decodes each object
// against the Kubernetes Go types and asserts the shape every workload must have.
// dockerfiles_test.go builds each service's production Dockerfile without Docker,
// from only the folders it copies.
package deploy
