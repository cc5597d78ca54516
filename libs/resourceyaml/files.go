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

// ErrorText is the message of a problem in one document: the file, the document (by kind
// and metadata.name, else by 1-based position), the field when known, and the problem.
func ErrorText(file, kind, name string, doc int, field string, err error) string {
	var b strings.Builder
	b.WriteString(file)
	if name != "" {
		fmt.Fprintf(&b, ": %s %q", kind, name)
	} else if doc > 0 {
		fmt.Fprintf(&b, ": document %d", doc)
	}
	if field != "" {
		b.WriteString(": ")
		b.WriteString(field)
	}
	b.WriteString(": ")
	b.WriteString(err.Error())
	return b.String()
}
