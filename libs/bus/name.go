package bus

import "errors"

// CheckName reports whether s can name a JetStream stream, consumer or key-value bucket:
// one or more ASCII letters, digits, '-' and '_' (no '.', which separates subject tokens,
// and no wildcard or white space).
func CheckName(s string) error {
	if s == "" {
		return errors.New("must not be empty")
	}
	for _, r := range s {
		if (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') && (r < '0' || r > '9') && r != '_' && r != '-' {
			return errors.New("may only contain letters, digits, '-' and '_'")
		}
	}
	return nil
}
