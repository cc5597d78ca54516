// Package component loads Dapr conversation component definitions from a directory of YAML
// files.
//
// A directory is read the way daprd reads its resources path: every *.yaml and *.yml file, in
// name order, each possibly holding several "---" separated documents. Documents that are not of
// kind Component (Resiliency, Configuration, Subscription, ...) and components whose spec.type is
// not "conversation.<provider>" (state stores, pub/sub, ...) are skipped, so a directory written
// for Dapr can be used unchanged.
//
// Conversation components are validated strictly: the apiVersion, a unique metadata.name, the
// spec.version, the provider type, the metadata each provider requires and the response cache
// TTL. Metadata values may come from secretKeyRef references, which are resolved from files
// (Kubernetes-style mounted secrets) or from environment variables. Every error names the file,
// the component and the field at fault; a directory with any error yields no components.
package component
