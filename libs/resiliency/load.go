package resiliency

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/parleyhq/parley/libs/resourceyaml"
)

// errorKind names a resiliency document in error messages.
const errorKind = "resiliency"

// APIVersion is the only apiVersion accepted for Resiliency documents.
const APIVersion = "dapr.io/v1alpha1"

// Kind is the kind of the documents Load reads; documents of other kinds are skipped.
const Kind = "Resiliency"

// Error is a problem with one document of a Resiliency file (Kind "resiliency", Name the
// document's metadata.name). Its message names the file, the document (by metadata.name, or
// by position when it has none) and the field.
type Error = resourceyaml.Error

// Load reads every Resiliency document in the *.yaml and *.yml files of dir, in file name
// order, and merges them into one Set: policy names and component targets share one namespace
// across documents, so a target may name a policy defined in another file. Documents of other
// kinds (components, configurations, ...) are skipped, so Dapr's resources directory can be
// used unchanged. A missing or unreadable directory is an error; one without Resiliency
// documents yields an empty Set.
//
// Documents are validated strictly: unknown fields, malformed durations, numbers and trip
// expressions, a policy or target defined twice and a target naming an unknown policy are
// errors. When anything is wrong Load returns no Set and every problem found, joined; each is
// an *Error unless it concerns a whole file. Scopes and the apps and actors targets are
// accepted and ignored: they concern Dapr sidecars, not conversation components.
func Load(dir string, opts ...Option) (*Set, error) {
	files, problems, err := resourceyaml.ReadDir(dir, errorKind)
	if err != nil {
		return nil, fmt.Errorf("read resiliency directory: %w", err)
	}
	l := &loader{set: newSet(opts...), defined: make(map[string]origin), errs: problems}
	for _, f := range files {
		l.file(f.Path, f.Data)
	}
	l.resolve()
	if len(l.errs) > 0 {
		return nil, errors.Join(l.errs...)
	}
	return l.set, nil
}

// origin is where something was defined.
type origin struct {
	file string
	name string // the document's metadata.name
	doc  int
}

func (o origin) String() string {
	if o.name != "" {
		return fmt.Sprintf("%s (resiliency %q)", o.file, o.name)
	}
	return fmt.Sprintf("%s (document %d)", o.file, o.doc)
}

// reference is a target's use of a named policy, checked once every document is read.
type reference struct {
	at    origin
	field string
	kind  string // "timeout", "retry" or "circuit breaker"
	name  string
}

type loader struct {
	set     *Set
	errs    []error
	defined map[string]origin // "<kind>/<name>" and "target/<component>" → first definition
	refs    []reference
}

func (l *loader) fail(at origin, field string, err error) {
	l.errs = append(l.errs, &Error{File: at.file, Kind: errorKind, Name: at.name, Document: at.doc, Field: field, Err: err})
}

// file reads every document of one file.
func (l *loader) file(path string, data []byte) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for doc := 1; ; doc++ {
		var node yaml.Node
		err := dec.Decode(&node)
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			l.errs = append(l.errs, &Error{File: path, Kind: errorKind, Err: fmt.Errorf("parse YAML: %w", err)})
			return
		}
		l.document(origin{file: path, doc: doc}, &node)
	}
}

// document reads one document if it is a Resiliency.
func (l *loader) document(at origin, node *yaml.Node) {
	root := node
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			return
		}
		root = root.Content[0]
	}
	root = resourceyaml.Deref(root)
	if resourceyaml.IsNull(root) || root.Kind != yaml.MappingNode {
		return // not a Kubernetes-style resource
	}
	kind, _ := resourceyaml.Scalar(resourceyaml.Lookup(root, "kind"))
	if kind != Kind {
		if strings.EqualFold(kind, Kind) {
			l.fail(at, "kind", fmt.Errorf("%q: must be exactly %q", kind, Kind))
		}
		return
	}
	m, err := resourceyaml.Mapping(root)
	if err != nil {
		l.fail(at, "", err)
		return
	}
	if meta, err := resourceyaml.Mapping(m["metadata"]); err != nil {
		l.fail(at, "metadata", err)
	} else if name, err := resourceyaml.Scalar(meta["name"]); err != nil {
		l.fail(at, "metadata.name", err)
	} else {
		at.name = name
	}
	if err := resourceyaml.OnlyKeys(m, "apiVersion", "kind", "metadata", "spec", "scopes"); err != nil {
		l.fail(at, "", err)
	}
	if v, err := resourceyaml.Scalar(m["apiVersion"]); err != nil {
		l.fail(at, "apiVersion", err)
	} else if v != APIVersion {
		l.fail(at, "apiVersion", fmt.Errorf("%q: must be %q", v, APIVersion))
	}
	if err := resourceyaml.ScalarList(m["scopes"]); err != nil {
		l.fail(at, "scopes", err)
	}
	spec, err := resourceyaml.Mapping(m["spec"])
	if err != nil {
		l.fail(at, "spec", err)
		return
	}
	if err := resourceyaml.OnlyKeys(spec, "policies", "targets"); err != nil {
		l.fail(at, "spec", err)
	}
	l.policies(at, spec["policies"])
	l.targets(at, spec["targets"])
}

func (l *loader) policies(at origin, n *yaml.Node) {
	const field = "spec.policies"
	policies, err := resourceyaml.Mapping(n)
	if err != nil {
		l.fail(at, field, err)
		return
	}
	if err := resourceyaml.OnlyKeys(policies, "timeouts", "retries", "circuitBreakers"); err != nil {
		l.fail(at, field, err)
	}
	l.each(at, field+".timeouts", policies["timeouts"], "timeout", func(field, name string, v *yaml.Node) {
		s, err := resourceyaml.Scalar(v)
		if err == nil && s == "" {
			err = errors.New("required")
		}
		var d time.Duration
		if err == nil {
			d, err = parseDuration(s)
		}
		if err != nil {
			l.fail(at, field, err)
			return
		}
		l.set.timeouts[name] = d
	})
	l.each(at, field+".retries", policies["retries"], "retry", func(field, name string, v *yaml.Node) {
		if r := l.retry(at, field, name, v); r != nil {
			l.set.retries[name] = r
		}
	})
	l.each(at, field+".circuitBreakers", policies["circuitBreakers"], "circuit breaker", func(field, name string, v *yaml.Node) {
		if cb := l.breaker(at, field, name, v); cb != nil {
			l.set.breakers[name] = cb
		}
	})
}

// each calls fn for every entry of the mapping n of named definitions of kind, after
// checking that the name is new.
func (l *loader) each(at origin, field string, n *yaml.Node, kind string, fn func(field, name string, v *yaml.Node)) {
	entries, err := resourceyaml.Pairs(n)
	if err != nil {
		l.fail(at, field, err)
		return
	}
	for _, e := range entries {
		f := field + "." + e.Key
		if e.Key == "" {
			l.fail(at, f, errors.New("empty name"))
			continue
		}
		key := kind + "/" + e.Key
		if first, dup := l.defined[key]; dup {
			l.fail(at, f, fmt.Errorf("%s %q is also defined in %s", kind, e.Key, first))
			continue
		}
		l.defined[key] = at
		fn(f, e.Key, e.Value)
	}
}

// retry reads one retry policy; nil when it is invalid (the problems are recorded).
func (l *loader) retry(at origin, field, name string, n *yaml.Node) *Retry {
	m, err := resourceyaml.Mapping(n)
	if err != nil {
		l.fail(at, field, err)
		return nil
	}
	before := len(l.errs)
	if err := resourceyaml.OnlyKeys(m, "policy", "duration", "initialInterval", "maxInterval", "maxRetries", "matching"); err != nil {
		l.fail(at, field, err)
	}
	r := &Retry{
		Name:            name,
		Policy:          BackoffConstant,
		Duration:        DefaultRetryDuration,
		InitialInterval: DefaultRetryInitialInterval,
		MaxInterval:     DefaultRetryMaxInterval,
		MaxRetries:      DefaultRetryMaxRetries,
	}
	if s, err := resourceyaml.Scalar(m["policy"]); err != nil {
		l.fail(at, field+".policy", err)
	} else {
		switch p := BackoffPolicy(strings.ToLower(s)); p {
		case "":
		case BackoffConstant, BackoffExponential:
			r.Policy = p
		default:
			l.fail(at, field+".policy", fmt.Errorf("%q: must be constant or exponential", s))
		}
	}
	for _, d := range []struct {
		key string
		dst *time.Duration
	}{{"duration", &r.Duration}, {"initialInterval", &r.InitialInterval}, {"maxInterval", &r.MaxInterval}} {
		if err := durationField(m[d.key], d.dst); err != nil {
			l.fail(at, field+"."+d.key, err)
		}
	}
	if r.Policy == BackoffExponential {
		switch {
		case r.MaxInterval <= 0:
			l.fail(at, field+".maxInterval", errors.New("must be positive"))
		case r.InitialInterval <= 0:
			l.fail(at, field+".initialInterval", errors.New("must be positive"))
		case r.InitialInterval > r.MaxInterval:
			l.fail(at, field+".initialInterval", fmt.Errorf("%s exceeds maxInterval %s", r.InitialInterval, r.MaxInterval))
		}
	}
	if s, err := resourceyaml.Scalar(m["maxRetries"]); err != nil {
		l.fail(at, field+".maxRetries", err)
	} else if s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		switch {
		case err != nil:
			l.fail(at, field+".maxRetries", fmt.Errorf("%q: not an integer", s))
		case v < -1:
			l.fail(at, field+".maxRetries", fmt.Errorf("%d: must be -1 (no limit) or at least 0", v))
		default:
			r.MaxRetries = v
		}
	}
	if matching, err := resourceyaml.Mapping(m["matching"]); err != nil {
		l.fail(at, field+".matching", err)
	} else {
		if err := resourceyaml.OnlyKeys(matching, "httpStatusCodes", "gRPCStatusCodes"); err != nil {
			l.fail(at, field+".matching", err)
		}
		for _, c := range []struct {
			key       string
			dst       *string
			low, high int
		}{
			{"httpStatusCodes", &r.HTTPStatusCodes, 100, 599},
			{"gRPCStatusCodes", &r.GRPCStatusCodes, 0, 16},
		} {
			s, err := resourceyaml.Scalar(matching[c.key])
			if err == nil {
				err = checkCodes(s, c.low, c.high)
			}
			if err != nil {
				l.fail(at, field+".matching."+c.key, err)
				continue
			}
			*c.dst = s
		}
	}
	if len(l.errs) > before {
		return nil
	}
	return r
}

// breaker reads one circuit breaker policy; nil when it is invalid.
func (l *loader) breaker(at origin, field, name string, n *yaml.Node) *CircuitBreaker {
	m, err := resourceyaml.Mapping(n)
	if err != nil {
		l.fail(at, field, err)
		return nil
	}
	before := len(l.errs)
	if err := resourceyaml.OnlyKeys(m, "maxRequests", "interval", "timeout", "trip"); err != nil {
		l.fail(at, field, err)
	}
	cb := &CircuitBreaker{Name: name, MaxRequests: DefaultCircuitBreakerMaxRequests, Timeout: DefaultCircuitBreakerTimeout}
	if s, err := resourceyaml.Scalar(m["maxRequests"]); err != nil {
		l.fail(at, field+".maxRequests", err)
	} else if s != "" {
		v, err := strconv.ParseUint(s, 10, 32)
		switch {
		case err != nil:
			l.fail(at, field+".maxRequests", fmt.Errorf("%q: not an integer between 0 and %d", s, uint32(math.MaxUint32)))
		case v > 0: // 0 means the default, as in gobreaker
			cb.MaxRequests = uint32(v)
		}
	}
	if err := durationField(m["interval"], &cb.Interval); err != nil {
		l.fail(at, field+".interval", err)
	}
	if err := durationField(m["timeout"], &cb.Timeout); err != nil {
		l.fail(at, field+".timeout", err)
	} else if cb.Timeout == 0 {
		cb.Timeout = DefaultCircuitBreakerTimeout // as in gobreaker
	}
	trip, err := resourceyaml.Scalar(m["trip"])
	if err == nil {
		if strings.TrimSpace(trip) == "" {
			trip = DefaultTrip
		}
		cb.Trip, err = ParseTrip(trip)
	}
	if err != nil {
		l.fail(at, field+".trip", err)
	}
	if len(l.errs) > before {
		return nil
	}
	return cb
}

func (l *loader) targets(at origin, n *yaml.Node) {
	const field = "spec.targets"
	targets, err := resourceyaml.Mapping(n)
	if err != nil {
		l.fail(at, field, err)
		return
	}
	if err := resourceyaml.OnlyKeys(targets, "apps", "actors", "components"); err != nil {
		l.fail(at, field, err)
	}
	for _, key := range []string{"apps", "actors"} {
		if _, err := resourceyaml.Mapping(targets[key]); err != nil {
			l.fail(at, field+"."+key, err)
		}
	}
	comps, err := resourceyaml.Pairs(targets["components"])
	if err != nil {
		l.fail(at, field+".components", err)
		return
	}
	for _, c := range comps {
		f := field + ".components." + c.Key
		if first, dup := l.defined["target/"+c.Key]; dup {
			l.fail(at, f, fmt.Errorf("component target %q is also defined in %s", c.Key, first))
			continue
		}
		l.defined["target/"+c.Key] = at
		directions, err := resourceyaml.Mapping(c.Value)
		if err != nil {
			l.fail(at, f, err)
			continue
		}
		if err := resourceyaml.OnlyKeys(directions, "inbound", "outbound"); err != nil {
			l.fail(at, f, err)
		}
		for _, dir := range []string{"inbound", "outbound"} {
			names, ok := l.names(at, f+"."+dir, directions[dir])
			if ok && dir == "outbound" {
				l.set.targets[c.Key] = names
			}
		}
	}
}

// names reads {timeout, retry, circuitBreaker} and records the references.
func (l *loader) names(at origin, field string, n *yaml.Node) (Names, bool) {
	m, err := resourceyaml.Mapping(n)
	if err != nil {
		l.fail(at, field, err)
		return Names{}, false
	}
	ok := true
	if err := resourceyaml.OnlyKeys(m, "timeout", "retry", "circuitBreaker"); err != nil {
		l.fail(at, field, err)
		ok = false
	}
	var names Names
	for _, ref := range []struct {
		key  string
		dst  *string
		kind string
	}{
		{"timeout", &names.Timeout, "timeout"},
		{"retry", &names.Retry, "retry"},
		{"circuitBreaker", &names.CircuitBreaker, "circuit breaker"},
	} {
		s, err := resourceyaml.Scalar(m[ref.key])
		if err != nil {
			l.fail(at, field+"."+ref.key, err)
			ok = false
			continue
		}
		if s != "" {
			*ref.dst = s
			l.refs = append(l.refs, reference{at: at, field: field + "." + ref.key, kind: ref.kind, name: s})
		}
	}
	return names, ok
}

// resolve checks that every reference names a defined policy. A policy that was defined but
// is invalid counts as defined: its own error is enough.
func (l *loader) resolve() {
	for _, r := range l.refs {
		if _, ok := l.defined[r.kind+"/"+r.name]; !ok {
			l.fail(r.at, r.field, fmt.Errorf("unknown %s policy %q", r.kind, r.name))
		}
	}
}

// parseDuration reads a Go duration, or an integer number of milliseconds as Dapr does.
func parseDuration(s string) (time.Duration, error) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 0 {
			return 0, fmt.Errorf("invalid duration %q: must not be negative", s)
		}
		if n > math.MaxInt64/int64(time.Millisecond) {
			return 0, fmt.Errorf("invalid duration %q: too large", s)
		}
		return time.Duration(n) * time.Millisecond, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q (want e.g. 500ms, 5s, 1m30s, or milliseconds)", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("invalid duration %q: must not be negative", s)
	}
	return d, nil
}

// durationField sets *dst from a scalar node; a missing or null node leaves it unchanged.
func durationField(n *yaml.Node, dst *time.Duration) error {
	s, err := resourceyaml.Scalar(n)
	if err != nil || s == "" {
		return err
	}
	d, err := parseDuration(s)
	if err != nil {
		return err
	}
	*dst = d
	return nil
}

// checkCodes validates a status code list such as "429,500-599", as Dapr parses
// matching.httpStatusCodes and matching.gRPCStatusCodes.
func checkCodes(s string, low, high int) error {
	for item := range strings.SplitSeq(s, ",") {
		if item == "" {
			continue
		}
		bounds := strings.Split(item, "-")
		if len(bounds) > 2 {
			return fmt.Errorf("%q: more than one '-' in %q", s, item)
		}
		var vals [2]int
		for i, b := range bounds {
			v, err := strconv.Atoi(b)
			if err != nil {
				return fmt.Errorf("%q: %q is not a code", s, b)
			}
			if v < low || v > high {
				return fmt.Errorf("%q: code %d outside %d-%d", s, v, low, high)
			}
			vals[i] = v
		}
		if len(bounds) == 2 && vals[1] < vals[0] {
			return fmt.Errorf("%q: range %q ends before it starts", s, item)
		}
	}
	return nil
}
