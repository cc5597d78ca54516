package component

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"go.yaml.in/yaml/v3"

	"github.com/parleyhq/parley/libs/resourceyaml"
)

// errorKind names a component document in error messages.
const errorKind = "component"

// APIVersion is the only apiVersion accepted for conversation components.
const APIVersion = "dapr.io/v1alpha1"

// Options configures LoadDir.
type Options struct {
	// LookupEnv resolves secretKeyRef references from the environment: the secret
	// {name: N, key: K} is the variable N. Nil means os.LookupEnv.
	LookupEnv func(string) (string, bool)
	// SecretsDir, when set, is searched before the environment: the secret {name: N, key: K}
	// is the file <SecretsDir>/N/K (K defaults to N), as Kubernetes mounts secrets. One
	// trailing newline is trimmed from the file content.
	SecretsDir string
	// Only, when not empty, loads just the components of these names; the others are skipped
	// before their metadata (and secrets) are read. A worker that serves a few components
	// needs only their secrets.
	Only []string
	// SkipSecrets leaves secretKeyRef references unresolved: their values read
	// SecretPlaceholder. The router uses it, so provider keys never reach it.
	SkipSecrets bool
}

// SecretPlaceholder is the value of every secretKeyRef entry loaded with SkipSecrets.
const SecretPlaceholder = "<secret>"

// LoadDir loads every conversation component defined in the *.yaml and *.yml files of dir, in
// file name order. Documents of other kinds and components of other types are skipped. A
// missing or unreadable directory is an error; an empty one yields no components. When any
// document is invalid, LoadDir returns no components and all the problems found, joined; each
// is an *Error unless it concerns the whole file.
func LoadDir(dir string, opts Options) ([]Component, error) {
	files, errs, err := resourceyaml.ReadDir(dir, errorKind)
	if err != nil {
		return nil, fmt.Errorf("read components directory: %w", err)
	}
	l := loader{secretsDir: opts.SecretsDir, lookupEnv: opts.LookupEnv, skipSecrets: opts.SkipSecrets, only: opts.Only}
	if l.lookupEnv == nil {
		l.lookupEnv = os.LookupEnv
	}

	var (
		components []Component
		definedIn  = make(map[string]string)
	)
	for _, f := range files {
		path := f.Path
		for _, d := range l.loadFile(path, f.Data) {
			errs = append(errs, d.errs...)
			if d.comp.Name == "" {
				continue
			}
			if first, dup := definedIn[d.comp.Name]; dup {
				errs = append(errs, &Error{
					File: path, Kind: errorKind, Name: d.comp.Name, Document: d.doc, Field: "metadata.name",
					Err: fmt.Errorf("duplicate component name, also defined in %s", first),
				})
				continue
			}
			definedIn[d.comp.Name] = path
			if len(d.errs) == 0 {
				components = append(components, d.comp)
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return components, nil
}

type loader struct {
	secretsDir  string
	lookupEnv   func(string) (string, bool)
	skipSecrets bool
	only        []string
}

// loaded is the outcome of one conversation component document. comp.Name is set whenever the
// name is valid, even when other fields have errors, so duplicates are still reported.
type loaded struct {
	comp Component
	doc  int
	errs []error
}

// loadFile parses every document of one file and returns the conversation components found.
func (l loader) loadFile(path string, data []byte) []loaded {
	var out []loaded
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for doc := 1; ; doc++ {
		var node yaml.Node
		err := dec.Decode(&node)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			return append(out, loaded{doc: doc, errs: []error{
				&Error{File: path, Kind: errorKind, Err: fmt.Errorf("parse YAML: %w", err)},
			}})
		}
		if d, ok := l.loadDocument(path, doc, &node); ok {
			out = append(out, d)
		}
	}
}

// loadDocument validates one document. ok is false when the document is not a conversation
// component (and not broken), so it is skipped.
func (l loader) loadDocument(path string, doc int, node *yaml.Node) (loaded, bool) {
	d := loaded{doc: doc, comp: Component{File: path}}
	fail := func(field string, err error) {
		d.errs = append(d.errs, &Error{File: path, Kind: errorKind, Name: d.comp.Name, Document: doc, Field: field, Err: err})
	}

	root := node
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			return d, false
		}
		root = root.Content[0]
	}
	root = resourceyaml.Deref(root)
	if resourceyaml.IsNull(root) {
		return d, false
	}
	if root.Kind != yaml.MappingNode {
		return d, false // not a Kubernetes-style resource, so not a component
	}

	// Decide whether the document is ours. Anything unclear here means "not a conversation
	// component": Dapr resource directories hold many other kinds.
	kind, _ := resourceyaml.Scalar(resourceyaml.Lookup(root, "kind"))
	typ, _ := resourceyaml.Scalar(resourceyaml.Lookup(resourceyaml.Lookup(root, "spec"), "type"))
	typ = strings.ToLower(typ)
	if !strings.HasPrefix(typ, TypePrefix) {
		return d, false
	}
	if kind != "Component" {
		if strings.EqualFold(kind, "Component") {
			fail("kind", fmt.Errorf("%q: must be exactly %q", kind, "Component"))
			return d, true
		}
		return d, false
	}

	top, err := resourceyaml.Mapping(root)
	if err != nil {
		fail("", err)
		return d, true
	}
	if meta, err := resourceyaml.Mapping(top["metadata"]); err != nil {
		fail("metadata", err)
	} else if name, err := resourceyaml.Scalar(meta["name"]); err != nil {
		fail("metadata.name", err)
	} else if name == "" {
		fail("metadata.name", errors.New("required"))
	} else if err := CheckName(name); err != nil {
		fail("metadata.name", fmt.Errorf("%q: %w", name, err))
	} else {
		d.comp.Name = name
		if len(l.only) > 0 && !slices.Contains(l.only, name) {
			return loaded{}, false
		}
	}

	spec, err := resourceyaml.Mapping(top["spec"])
	if err != nil {
		fail("spec", err)
		return d, true
	}

	if v, err := resourceyaml.Scalar(top["apiVersion"]); err != nil {
		fail("apiVersion", err)
	} else if v != APIVersion {
		fail("apiVersion", fmt.Errorf("%q: must be %q", v, APIVersion))
	}

	d.comp.Type = typ
	rules, known := providerRules(d.comp.Provider())
	if !known {
		fail("spec.type", fmt.Errorf("%q: unsupported type (want conversation.openai, anthropic, aws.bedrock, "+
			"deepseek, huggingface, mistral, echo, googleai or ollama)", typ))
	}

	if v, err := resourceyaml.Scalar(spec["version"]); err != nil {
		fail("spec.version", err)
	} else {
		v = strings.ToLower(v)
		if v != "" && v != "v0" && v != "v1" {
			fail("spec.version", fmt.Errorf("%q: unsupported version (want \"\", \"v0\" or \"v1\")", v))
		}
		d.comp.Version = v
	}

	md, errs := l.metadata(spec["metadata"])
	for _, e := range errs {
		fail(e.field, e.err)
	}
	d.comp.Metadata = md

	if known {
		for _, req := range rules.required(d.comp) {
			if v, _ := d.comp.Get(req.key); v == "" {
				fail(fmt.Sprintf("metadata %q", req.key), errors.New(req.why))
			}
		}
	}

	ttl, field, err := cacheTTL(d.comp)
	if err != nil {
		fail(field, err)
	} else {
		// Parley honours the TTL on every component, echo and deepseek included.
		d.comp.CacheTTL = ttl
	}
	return d, true
}

type fieldError struct {
	field string
	err   error
}

// metadata decodes spec.metadata: a list of {name, value} or {name, secretKeyRef: {name, key}}.
func (l loader) metadata(n *yaml.Node) (map[string]string, []fieldError) {
	out := make(map[string]string)
	n = resourceyaml.Deref(n)
	if resourceyaml.IsNull(n) {
		return out, nil
	}
	if n.Kind != yaml.SequenceNode {
		return out, []fieldError{{"spec.metadata", fmt.Errorf("must be a list, got %s", resourceyaml.KindName(n))}}
	}
	var errs []fieldError
	for i, item := range n.Content {
		entry, err := resourceyaml.Mapping(item)
		if err != nil {
			errs = append(errs, fieldError{fmt.Sprintf("spec.metadata[%d]", i), err})
			continue
		}
		name, err := resourceyaml.Scalar(entry["name"])
		if err == nil && name == "" {
			err = errors.New("required")
		}
		if err != nil {
			errs = append(errs, fieldError{fmt.Sprintf("spec.metadata[%d].name", i), err})
			continue
		}
		field := fmt.Sprintf("metadata %q", name)
		if err := resourceyaml.OnlyKeys(entry, "name", "value", "secretKeyRef"); err != nil {
			errs = append(errs, fieldError{field, err})
			continue
		}
		var value string
		if ref, hasRef := entry["secretKeyRef"]; hasRef {
			if _, hasValue := entry["value"]; hasValue {
				errs = append(errs, fieldError{field, errors.New("has both value and secretKeyRef")})
				continue
			}
			if l.skipSecrets {
				value = SecretPlaceholder
			} else {
				value, err = l.secret(ref)
			}
		} else {
			value, err = resourceyaml.Scalar(entry["value"])
			if err == nil {
				value = l.expandTemplates(value)
			}
		}
		if err != nil {
			errs = append(errs, fieldError{field, err})
			continue
		}
		if dup := duplicateKey(out, name); dup != "" {
			errs = append(errs, fieldError{field, fmt.Errorf("duplicate of %q (names are case-insensitive)", dup)})
			continue
		}
		out[name] = value
	}
	return out, errs
}

// secret resolves a secretKeyRef node from SecretsDir, then from the environment.
func (l loader) secret(n *yaml.Node) (string, error) {
	ref, err := resourceyaml.Mapping(n)
	if err != nil {
		return "", fmt.Errorf("secretKeyRef: %w", err)
	}
	if err := resourceyaml.OnlyKeys(ref, "name", "key"); err != nil {
		return "", fmt.Errorf("secretKeyRef: %w", err)
	}
	name, err := resourceyaml.Scalar(ref["name"])
	if err != nil {
		return "", fmt.Errorf("secretKeyRef.name: %w", err)
	}
	if name == "" {
		return "", errors.New("secretKeyRef.name: required")
	}
	key, err := resourceyaml.Scalar(ref["key"])
	if err != nil {
		return "", fmt.Errorf("secretKeyRef.key: %w", err)
	}
	if key == "" {
		key = name
	}

	tried := ""
	if l.secretsDir != "" {
		if !pathElement(name) || !pathElement(key) {
			return "", fmt.Errorf("secretKeyRef {name: %q, key: %q}: name and key must be plain file names", name, key)
		}
		p := filepath.Join(l.secretsDir, name, key)
		data, err := os.ReadFile(p)
		switch {
		case err == nil:
			s := strings.TrimSuffix(string(data), "\n")
			return strings.TrimSuffix(s, "\r"), nil
		case errors.Is(err, fs.ErrNotExist):
			tried = "file " + p + " or "
		default:
			return "", fmt.Errorf("secretKeyRef {name: %q, key: %q}: read secret file: %w", name, key, err)
		}
	}
	if v, ok := l.lookupEnv(name); ok {
		return v, nil
	}
	return "", fmt.Errorf("secretKeyRef {name: %q, key: %q}: not found (no %senvironment variable %q)", name, key, tried, name)
}

// cacheTTL reads responseCacheTTL or its alias cacheTTL: a Go duration or whole seconds.
func cacheTTL(c Component) (time.Duration, string, error) {
	var key, value string
	for k, v := range c.Metadata {
		if !strings.EqualFold(k, "responseCacheTTL") && !strings.EqualFold(k, "cacheTTL") {
			continue
		}
		if key != "" {
			a, b := key, k
			if b < a {
				a, b = b, a
			}
			return 0, fmt.Sprintf("metadata %q", b), fmt.Errorf("conflicts with %q (alias)", a)
		}
		key, value = k, v
	}
	if key == "" || value == "" {
		return 0, "", nil
	}
	d, err := parseTTL(value)
	if err != nil {
		return 0, fmt.Sprintf("metadata %q", key), err
	}
	return d, "", nil
}

// parseTTL parses a Go duration string or an integer number of seconds, as dapr/kit does.
func parseTTL(s string) (time.Duration, error) {
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return 0, fmt.Errorf("invalid duration %q: must not be negative", s)
		}
		return d, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q", s)
	}
	if n < 0 {
		return 0, fmt.Errorf("invalid duration %q: must not be negative", s)
	}
	if n > math.MaxInt64/int64(time.Second) {
		return 0, fmt.Errorf("invalid duration %q: too large", s)
	}
	return time.Duration(n) * time.Second, nil
}

type requirement struct {
	key string
	why string
}

type providerRule struct {
	keyRequired bool
}

// providerRules describes each registered conversation type (Dapr 1.18, contrib v1.18.4).
func providerRules(provider string) (providerRule, bool) {
	switch provider {
	case "openai", "anthropic", "googleai", "huggingface", "mistral", "deepseek":
		return providerRule{keyRequired: true}, true
	case "aws.bedrock", "ollama":
		return providerRule{}, true
	case "echo":
		return providerRule{}, true
	default:
		return providerRule{}, false
	}
}

// required lists the metadata the component must set, non-empty.
func (r providerRule) required(c Component) []requirement {
	var out []requirement
	if r.keyRequired {
		out = append(out, requirement{"key", "required by " + c.Type})
	}
	apiType, _ := c.Get("apiType")
	switch {
	case c.Provider() == "openai" && strings.EqualFold(apiType, "azure"):
		out = append(out,
			requirement{"endpoint", "required when apiType is azure"},
			requirement{"apiVersion", "required when apiType is azure"})
	case c.Provider() == "anthropic" && strings.EqualFold(apiType, "foundry"):
		out = append(out, requirement{"endpoint", "required when apiType is foundry"})
	}
	return out
}

// CheckName reports whether name can name a component: it must be safe in URL paths and as a
// sequence of NATS subject tokens (no wildcard, white space or empty token). Everything that
// takes a component name from outside the component files checks it with this function.
func CheckName(name string) error {
	if name == "" {
		return errors.New("must not be empty")
	}
	const rule = "must start with a letter or digit and contain only letters, digits, '-', '_' and '.'"
	for i, r := range name {
		alnum := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
		if i == 0 && !alnum || !alnum && r != '-' && r != '_' && r != '.' {
			return errors.New(rule)
		}
	}
	if strings.HasSuffix(name, ".") || strings.Contains(name, "..") {
		return errors.New("must not end with '.' or contain '..'")
	}
	return nil
}

func pathElement(s string) bool {
	return s != "." && filepath.IsLocal(s) && !strings.ContainsAny(s, `/\`)
}

func duplicateKey(m map[string]string, name string) string {
	for k := range m {
		if strings.EqualFold(k, name) {
			return k
		}
	}
	return ""
}

// expandTemplates resolves Dapr's templated metadata values: {uuid} (a random UUIDv4 per
// occurrence), {podName} (POD_NAME, else the host name), {namespace} (NAMESPACE, default
// "default", joined with the app id as Dapr does: "<namespace>.<appID>") and {appID}
// (APP_ID, default "parley").
func (l loader) expandTemplates(v string) string {
	if !strings.Contains(v, "{") {
		return v
	}
	env := func(key, def string) string {
		if x, ok := l.lookupEnv(key); ok && x != "" {
			return x
		}
		return def
	}
	appID := env("APP_ID", "parley")
	for strings.Contains(v, "{uuid}") {
		v = strings.Replace(v, "{uuid}", uuid.NewString(), 1)
	}
	if strings.Contains(v, "{podName}") {
		host, _ := os.Hostname()
		v = strings.ReplaceAll(v, "{podName}", env("POD_NAME", host))
	}
	v = strings.ReplaceAll(v, "{namespace}", env("NAMESPACE", "default")+"."+appID)
	return strings.ReplaceAll(v, "{appID}", appID)
}
