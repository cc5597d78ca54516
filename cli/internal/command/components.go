package command

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// metadataPath is the Dapr metadata endpoint, where the router lists its conversation
// components.
const metadataPath = "/v1.0/metadata"

// maxMetadataBytes bounds the metadata answer read.
const maxMetadataBytes = 4 << 20

// Component is one conversation component the router serves, as /v1.0/metadata lists it.
type Component struct {
	Name         string   `json:"name"`
	Type         string   `json:"type"`
	Version      string   `json:"version,omitempty"`
	Capabilities []string `json:"capabilities,omitempty"`
}

// components runs `parley components`.
func components(ctx context.Context, g *global, args []string, io IO) error {
	fs := flag.NewFlagSet("parley components", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print the components as JSON")
	rest, err := parseCommand(fs, g, "parley components [-json]", args, io)
	if err != nil {
		return err
	}
	if len(rest) != 0 {
		return fmt.Errorf("%w: components takes no arguments, got %q", errUsage, rest)
	}
	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	list, err := fetchComponents(ctx, g, httpClient(g, io.HTTPClient))
	if err != nil {
		return err
	}
	return writeComponents(io.Stdout, list, *asJSON || g.json())
}

// fetchComponents reads the router's component list.
func fetchComponents(ctx context.Context, g *global, hc *http.Client) ([]Component, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.router+metadataPath, nil)
	if err != nil {
		return nil, fmt.Errorf("components: %w", err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		if hint := unreachable(g, err); hint != "" {
			return nil, fmt.Errorf("components: %w (%s)", err, hint)
		}
		return nil, fmt.Errorf("components: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := readAtMost(resp.Body, maxMetadataBytes)
	if err != nil {
		return nil, fmt.Errorf("components: read %s: %w", metadataPath, err)
	}
	if resp.StatusCode != http.StatusOK {
		msg := fmt.Sprintf("components: GET %s: %s: %s", metadataPath, resp.Status, strings.TrimSpace(string(body)))
		if resp.StatusCode == http.StatusUnauthorized {
			msg += " (" + tokenHint(g) + ")"
		}
		return nil, fmt.Errorf("%s", msg)
	}
	return ParseMetadata(body)
}

// ParseMetadata reads the components out of a Dapr metadata document.
func ParseMetadata(body []byte) ([]Component, error) {
	var doc struct {
		Components *[]Component `json:"components"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("components: %s is not a metadata document: %w", metadataPath, err)
	}
	if doc.Components == nil {
		return nil, fmt.Errorf("components: %s lists no components field", metadataPath)
	}
	return *doc.Components, nil
}

// writeComponents prints the components as a table or as {"components": [...]}.
func writeComponents(w io.Writer, list []Component, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if list == nil {
			list = []Component{}
		}
		return enc.Encode(map[string][]Component{"components": list})
	}
	rows := make([][]string, 0, len(list))
	for _, c := range list {
		rows = append(rows, []string{c.Name, dash(c.Type), dash(c.Version), dash(strings.Join(c.Capabilities, ","))})
	}
	return printer{w: w}.table([]string{"NAME", "TYPE", "VERSION", "CAPABILITIES"}, rows)
}
