package resourceyaml

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// File is one YAML file of a resources folder.
type File struct {
	Path string
	Data []byte
}

// ReadDir returns the regular *.yaml and *.yml files of dir (following symlinks, as
// Kubernetes ConfigMap mounts need) in name order. A file that cannot be read is reported in
// problems, naming what was read ("stat component file: ..."), and skipped; err is the
// directory's own failure, unwrapped.
func ReadDir(dir, kind string) (files []File, problems []error, err error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, err
	}
	for _, entry := range entries {
		ext := strings.ToLower(filepath.Ext(entry.Name()))
		if ext != ".yaml" && ext != ".yml" {
			continue
		}
		path := filepath.Join(dir, entry.Name())
		info, err := os.Stat(path)
		if err != nil {
			problems = append(problems, fmt.Errorf("stat %s file: %w", kind, err))
			continue
		}
		if !info.Mode().IsRegular() {
			continue
		}
		data, err := os.ReadFile(path)
		if err != nil {
			problems = append(problems, fmt.Errorf("read %s file: %w", kind, err))
			continue
		}
		files = append(files, File{Path: path, Data: data})
	}
	return files, problems, nil
}

// Error is a problem with one document of a resource file. Its message names the file, the
// document (by kind and metadata.name, else by 1-based position), the field when known, and
// the problem: "components/openai.yaml: component "openai": metadata "key": required".
type Error struct {
	// File is the path of the file.
	File string
	// Kind is the resource kind as the message says it, e.g. "component" or "resiliency".
	Kind string
	// Name is the document's metadata.name; empty when it has no usable name.
	Name string
	// Document is the 1-based position of the document in the file; zero for the file.
	Document int
	// Field names what is wrong, e.g. `metadata "key"` or "spec.version"; may be empty.
	Field string
	// Err is the problem itself.
	Err error
}

// Error implements error.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Name != "" {
		fmt.Fprintf(&b, ": %s %q", e.Kind, e.Name)
	} else if e.Document > 0 {
		fmt.Fprintf(&b, ": document %d", e.Document)
	}
	if e.Field != "" {
		b.WriteString(": ")
		b.WriteString(e.Field)
	}
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	return b.String()
}

// Unwrap returns the underlying problem.
func (e *Error) Unwrap() error { return e.Err }
