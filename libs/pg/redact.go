package pg

import (
	"net/url"
	"strings"
)

const (
	mask           = "xxxxx"
	redactedWhole  = "[redacted]"
	urlSchemeShort = "postgres://"
	urlSchemeLong  = "postgresql://"
)

// RedactURL returns the connection string with every password masked. Input it cannot parse
// unambiguously is replaced whole, so nothing it returns can carry a secret.
func RedactURL(dsn string) string {
	if dsn == "" {
		return ""
	}
	if strings.HasPrefix(dsn, urlSchemeShort) || strings.HasPrefix(dsn, urlSchemeLong) {
		return redactURLForm(dsn)
	}
	return redactKeywordValue(dsn)
}

func isSecretKey(k string) bool {
	return strings.Contains(strings.ToLower(k), "password")
}

func redactURLForm(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return schemePrefix(dsn) + redactedWhole
	}
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), mask)
		}
	}
	if u.RawQuery != "" {
		q, err := url.ParseQuery(u.RawQuery)
		if err != nil {
			u.RawQuery = redactedWhole
		} else {
			for k := range q {
				if isSecretKey(k) {
					q.Set(k, mask)
				}
			}
			u.RawQuery = q.Encode()
		}
	}
	u.Fragment, u.RawFragment = "", ""
	return u.String()
}

// schemePrefix returns the scheme prefix of a URL-form connection string.
func schemePrefix(dsn string) string {
	if strings.HasPrefix(dsn, urlSchemeLong) {
		return urlSchemeLong
	}
	return urlSchemeShort
}

// redactKeywordValue masks password values in libpq's keyword/value form
// (host=h password='a b' dbname=d), following libpq's quoting rules: a value is a run of
// non-space characters or a single-quoted string, and a backslash escapes the next character
// in either.
func redactKeywordValue(dsn string) string {
	var b strings.Builder
	s := dsn
	for {
		s = strings.TrimLeft(s, " \t\n\r\f\v")
		if s == "" {
			return b.String()
		}
		eq := strings.IndexAny(s, "= \t\n\r\f\v")
		if eq <= 0 {
			return redactedWhole
		}
		key := s[:eq]
		s = strings.TrimLeft(s[eq:], " \t\n\r\f\v")
		if !strings.HasPrefix(s, "=") {
			return redactedWhole
		}
		s = strings.TrimLeft(s[1:], " \t\n\r\f\v")
		n, ok := valueLen(s)
		if !ok {
			return redactedWhole
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(key)
		b.WriteByte('=')
		if isSecretKey(key) {
			b.WriteString(mask)
		} else {
			b.WriteString(s[:n])
		}
		s = s[n:]
	}
}

// valueLen returns the length of the raw value at the start of s.
func valueLen(s string) (int, bool) {
	if strings.HasPrefix(s, "'") {
		for i := 1; i < len(s); i++ {
			switch s[i] {
			case '\\':
				i++
			case '\'':
				return i + 1, true
			}
		}
		return 0, false // unterminated quote
	}
	i := 0
	for i < len(s) && !strings.ContainsRune(" \t\n\r\f\v", rune(s[i])) {
		if s[i] == '\\' {
			i++
		}
		i++
	}
	if i > len(s) {
		return 0, false // trailing backslash
	}
	return i, true
}
