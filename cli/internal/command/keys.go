package command

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// The router's keys file (services/router/internal/apikey): the CLI writes what the
// router reads. Its hash is HMAC-SHA-256 under the deployment's pepper; the two
// implementations share a test vector.
const (
	keyPrefix  = "pk_"
	hashScheme = "hmac-sha256:"
	minPepper  = 16
	// EnvPepper and EnvPepperFile are the router's own settings of the pepper.
	EnvPepper     = "ROUTER_API_KEY_PEPPER"
	EnvPepperFile = "ROUTER_API_KEY_PEPPER_FILE"
	// EnvKeysFile is the router's keys file setting.
	EnvKeysFile = "ROUTER_API_KEYS_FILE"
)

// keyEntry is one entry of the keys file, as the router reads it.
type keyEntry struct {
	ID                string     `yaml:"id"`
	Tenant            string     `yaml:"tenant"`
	Hash              string     `yaml:"hash"`
	Admin             bool       `yaml:"admin,omitempty"`
	Components        []string   `yaml:"components,omitempty"`
	RequestsPerMinute int64      `yaml:"requestsPerMinute,omitempty"`
	TokensPerMinute   int64      `yaml:"tokensPerMinute,omitempty"`
	TokenBudget       int64      `yaml:"tokenBudget,omitempty"`
	BudgetPeriod      string     `yaml:"budgetPeriod,omitempty"`
	Revoked           bool       `yaml:"revoked,omitempty"`
	Created           *time.Time `yaml:"created,omitempty"`
}

type keysFile struct {
	Keys []keyEntry `yaml:"keys"`
}

var (
	keyIDPattern  = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	tenantPattern = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)
)

// HashKey is the stored form of key under pepper.
func HashKey(pepper []byte, key string) string {
	m := hmac.New(sha256.New, pepper)
	m.Write([]byte(key))
	return hashScheme + hex.EncodeToString(m.Sum(nil))
}

// keysCall is one `parley keys` command.
type keysCall struct {
	g    *global
	io   IO
	file string
}

const keysUsage = `usage: parley keys create|list|revoke [flags]

  keys create -id ID -tenant T [-components a,b] [-rpm N] [-tpm N] [-budget N -budget-period day|month] [-admin]
              prints the new key once and writes only its hash to the keys file
  keys list   the keys of the file (ids, tenants, limits; never hashes)
  keys revoke ID [-delete]
              marks the key revoked (or deletes its entry); routers refuse it from their next reload

The keys file is -file, else $ROUTER_API_KEYS_FILE. create needs the router's pepper:
-pepper-file, else $ROUTER_API_KEY_PEPPER_FILE, else $ROUTER_API_KEY_PEPPER.
`

// keys runs `parley keys <command>`.
func keys(g *global, command string, args []string, io IO) error {
	c := &keysCall{g: g, io: io}
	switch command {
	case "create":
		return c.create(args)
	case "list":
		return c.list(args)
	case "revoke":
		return c.revoke(args)
	}
	_, _ = fmt.Fprint(io.Stderr, keysUsage)
	return fmt.Errorf("%w: want keys create, keys list or keys revoke, got %q", errUsage, command)
}

func (c *keysCall) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.file, "file", "", "the keys file; else $"+EnvKeysFile)
}

func (c *keysCall) resolve() error {
	if c.file == "" {
		c.file = c.io.getenv(EnvKeysFile)
	}
	if c.file == "" {
		return fmt.Errorf("%w: -file or $%s names the keys file", errUsage, EnvKeysFile)
	}
	return nil
}

// read loads the keys file; a missing file is an empty one.
func (c *keysCall) read() (*keysFile, error) {
	b, err := os.ReadFile(c.file)
	if errors.Is(err, os.ErrNotExist) {
		return &keysFile{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	var f keysFile
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && err.Error() != "EOF" {
		return nil, fmt.Errorf("keys: %s: %s", c.file, strings.Join(strings.Fields(err.Error()), " "))
	}
	return &f, nil
}

// write replaces the keys file atomically (a router never reads half of it), mode 0600.
func (c *keysCall) write(f *keysFile) error {
	var b bytes.Buffer
	b.WriteString("# Parley API keys: hashes only (parley keys create). Read by the router (ROUTER_API_KEYS_FILE).\n")
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(f); err != nil {
		return fmt.Errorf("keys: encode: %w", err)
	}
	if err := enc.Close(); err != nil {
		return fmt.Errorf("keys: encode: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(c.file), ".keys-*")
	if err != nil {
		return fmt.Errorf("keys: %w", err)
	}
	defer func() { _ = os.Remove(tmp.Name()) }()
	if _, err := tmp.Write(b.Bytes()); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("keys: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("keys: %w", err)
	}
	if err := os.Rename(tmp.Name(), c.file); err != nil {
		return fmt.Errorf("keys: %w", err)
	}
	return nil
}

func (c *keysCall) pepper(file string) ([]byte, error) {
	if file == "" {
		file = c.io.getenv(EnvPepperFile)
	}
	p := []byte(c.io.getenv(EnvPepper))
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("keys: pepper: %w", err)
		}
		p = []byte(strings.TrimRight(string(b), "\r\n"))
	}
	if len(p) < minPepper {
		return nil, fmt.Errorf("%w: the router's pepper (at least %d bytes) is needed: -pepper-file, $%s or $%s", errUsage, minPepper, EnvPepperFile, EnvPepper)
	}
	return p, nil
}

func (c *keysCall) create(args []string) error {
	fs := flag.NewFlagSet("parley keys create", flag.ContinueOnError)
	c.flags(fs)
	var e keyEntry
	var components, pepperFile string
	fs.StringVar(&e.ID, "id", "", "the key's id (letters, digits, '-', '_'): in logs, metrics and the audit log")
	fs.StringVar(&e.Tenant, "tenant", "", "the key's tenant")
	fs.StringVar(&components, "components", "", "comma-separated components the key may use; none means all")
	fs.Int64Var(&e.RequestsPerMinute, "rpm", 0, "requests per minute, across every router (0: no limit)")
	fs.Int64Var(&e.TokensPerMinute, "tpm", 0, "tokens per minute, across every router (0: no limit)")
	fs.Int64Var(&e.TokenBudget, "budget", 0, "token budget per -budget-period (0: none)")
	fs.StringVar(&e.BudgetPeriod, "budget-period", "", "day or month (UTC)")
	fs.BoolVar(&e.Admin, "admin", false, "the key may name any tenant in audit queries")
	fs.StringVar(&pepperFile, "pepper-file", "", "file holding the router's pepper")
	rest, err := parseCommand(fs, c.g, "parley keys create -id ID -tenant T [flags]", args, c.io)
	if err != nil {
		return err
	}
	if len(rest) != 0 {
		return fmt.Errorf("%w: keys create takes no arguments, got %q", errUsage, rest)
	}
	if err := c.resolve(); err != nil {
		return err
	}
	if !keyIDPattern.MatchString(e.ID) {
		return fmt.Errorf("%w: -id must be 1 to 64 letters, digits, '-' or '_'", errUsage)
	}
	if !tenantPattern.MatchString(e.Tenant) {
		return fmt.Errorf("%w: -tenant must be 1 to 64 letters, digits, '-', '_' or '.'", errUsage)
	}
	if e.RequestsPerMinute < 0 || e.TokensPerMinute < 0 || e.TokenBudget < 0 {
		return fmt.Errorf("%w: limits must not be negative", errUsage)
	}
	if (e.TokenBudget > 0) != (e.BudgetPeriod != "") || (e.BudgetPeriod != "" && e.BudgetPeriod != "day" && e.BudgetPeriod != "month") {
		return fmt.Errorf("%w: -budget needs -budget-period day or month, and the other way round", errUsage)
	}
	for _, comp := range strings.Split(components, ",") {
		if comp = strings.TrimSpace(comp); comp != "" {
			e.Components = append(e.Components, comp)
		}
	}
	pepper, err := c.pepper(pepperFile)
	if err != nil {
		return err
	}
	f, err := c.read()
	if err != nil {
		return err
	}
	for _, k := range f.Keys {
		if k.ID == e.ID {
			return fmt.Errorf("keys: id %q is already in %s (revoke -delete it first)", e.ID, c.file)
		}
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return fmt.Errorf("keys: %w", err)
	}
	key := keyPrefix + base64.RawURLEncoding.EncodeToString(raw)
	e.Hash = HashKey(pepper, key)
	now := c.io.Now().UTC().Truncate(time.Second)
	e.Created = &now
	f.Keys = append(f.Keys, e)
	if err := c.write(f); err != nil {
		return err
	}
	_, _ = fmt.Fprintf(c.io.Stderr, "key %s (tenant %s) added to %s; it is shown once, below:\n", e.ID, e.Tenant, c.file)
	_, err = fmt.Fprintln(c.io.Stdout, key)
	return err
}

func (c *keysCall) list(args []string) error {
	fs := flag.NewFlagSet("parley keys list", flag.ContinueOnError)
	c.flags(fs)
	rest, err := parseCommand(fs, c.g, "parley keys list [-file F]", args, c.io)
	if err != nil {
		return err
	}
	if len(rest) != 0 {
		return fmt.Errorf("%w: keys list takes no arguments, got %q", errUsage, rest)
	}
	if err := c.resolve(); err != nil {
		return err
	}
	f, err := c.read()
	if err != nil {
		return err
	}
	p := printer{w: c.io.Stdout, json: c.g.json()}
	if p.json {
		out := make([]map[string]any, 0, len(f.Keys))
		for _, k := range f.Keys {
			out = append(out, map[string]any{
				"id": k.ID, "tenant": k.Tenant, "admin": k.Admin, "components": k.Components,
				"requestsPerMinute": k.RequestsPerMinute, "tokensPerMinute": k.TokensPerMinute,
				"tokenBudget": k.TokenBudget, "budgetPeriod": k.BudgetPeriod, "revoked": k.Revoked, "created": k.Created,
			})
		}
		enc := json.NewEncoder(c.io.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	rows := make([][]string, 0, len(f.Keys))
	for _, k := range f.Keys {
		status := "active"
		if k.Revoked {
			status = "revoked"
		}
		comps := strings.Join(k.Components, ",")
		if comps == "" {
			comps = "*"
		}
		budget := "-"
		if k.TokenBudget > 0 {
			budget = strconv.FormatInt(k.TokenBudget, 10) + "/" + k.BudgetPeriod
		}
		created := ""
		if k.Created != nil {
			created = k.Created.UTC().Format(time.RFC3339)
		}
		rows = append(rows, []string{k.ID, k.Tenant, status, strconv.FormatBool(k.Admin), comps,
			limitText(k.RequestsPerMinute), limitText(k.TokensPerMinute), budget, created})
	}
	return p.table([]string{"ID", "TENANT", "STATUS", "ADMIN", "COMPONENTS", "RPM", "TPM", "BUDGET", "CREATED"}, rows)
}

func limitText(n int64) string {
	if n == 0 {
		return "-"
	}
	return strconv.FormatInt(n, 10)
}

func (c *keysCall) revoke(args []string) error {
	fs := flag.NewFlagSet("parley keys revoke", flag.ContinueOnError)
	c.flags(fs)
	del := fs.Bool("delete", false, "delete the entry rather than mark it revoked")
	rest, err := parseCommand(fs, c.g, "parley keys revoke ID [-delete] [-file F]", args, c.io)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return fmt.Errorf("%w: keys revoke takes one key id", errUsage)
	}
	if err := c.resolve(); err != nil {
		return err
	}
	f, err := c.read()
	if err != nil {
		return err
	}
	for i := range f.Keys {
		if f.Keys[i].ID != rest[0] {
			continue
		}
		if *del {
			f.Keys = append(f.Keys[:i], f.Keys[i+1:]...)
		} else {
			f.Keys[i].Revoked = true
		}
		if err := c.write(f); err != nil {
			return err
		}
		_, err = fmt.Fprintf(c.io.Stdout, "key %s revoked; routers refuse it from their next reload (ROUTER_API_KEYS_RELOAD_INTERVAL)\n", rest[0])
		return err
	}
	return fmt.Errorf("keys: no key %q in %s", rest[0], c.file)
}
