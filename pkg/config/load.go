package config

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// ErrInvalid is matched (errors.Is) by every error that reports a problem
// in the configuration's content, as opposed to an I/O failure.
var ErrInvalid = errors.New("config: invalid configuration")

// LoadError carries every diagnostic found in a configuration.
//
// Files holds the sources for WriteText, with every redis_auth value
// masked, so printing the error never prints a password.
type LoadError struct {
	Diags hcl.Diagnostics
	Files map[string]*hcl.File
}

// Error renders one diagnostic per line as
// "file:line,col-col: summary; detail".
func (e *LoadError) Error() string {
	var b strings.Builder
	for i, d := range e.Diags {
		if i > 0 {
			b.WriteByte('\n')
		}
		if d.Subject != nil {
			b.WriteString(d.Subject.String())
			b.WriteString(": ")
		}
		b.WriteString(d.Summary)
		if d.Detail != "" {
			b.WriteString("; ")
			b.WriteString(d.Detail)
		}
	}
	return b.String()
}

// Unwrap lets callers match ErrInvalid and extract hcl.Diagnostics with
// errors.As.
func (e *LoadError) Unwrap() []error { return []error{ErrInvalid, e.Diags} }

// WriteText writes the diagnostics for a human, with source excerpts,
// wrapped at width columns (0 = no wrapping) and optionally in color.
func (e *LoadError) WriteText(w io.Writer, width uint, color bool) error {
	if err := hcl.NewDiagnosticTextWriter(w, e.Files, width, color).WriteDiagnostics(e.Diags); err != nil {
		return fmt.Errorf("config: write diagnostics: %w", err)
	}
	return nil
}

// Load reads and validates the configuration at path. Content problems
// are reported as a *LoadError; a read failure wraps the os error (so
// errors.Is(err, fs.ErrNotExist) works).
func Load(path string) (*Config, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(src, path)
}

// Parse validates src as if read from filename, which only labels
// diagnostics and becomes Config.File.
func Parse(src []byte, filename string) (*Config, error) {
	return ParseWithFiles(src, filename, nil)
}

// ParseWithFiles is Parse with the TLS files' contents given (a worker is
// given what its master read and checked, and may not be able to read the
// key itself); nil reads them from disk.
func ParseWithFiles(src []byte, filename string, files map[string][]byte) (*Config, error) {
	f, diags := hclparse.NewParser().ParseHCL(src, filename)
	if !diags.HasErrors() {
		var cfg *Config
		cfg, diags = decode(f.Body, filename, files)
		if !diags.HasErrors() {
			return cfg, nil
		}
		if body, ok := f.Body.(*hclsyntax.Body); ok {
			addTwemproxyHints(body, diags)
		}
	}
	sortDiags(diags)
	return nil, &LoadError{Diags: diags, Files: redactedFiles(src, filename, f)}
}

// sortDiags orders diagnostics by position: gohcl decodes attributes in
// map order, and a stable order makes the output reproducible.
func sortDiags(diags hcl.Diagnostics) {
	slices.SortStableFunc(diags, func(a, b *hcl.Diagnostic) int {
		switch {
		case a.Subject == nil && b.Subject == nil:
			return 0
		case a.Subject == nil:
			return -1
		case b.Subject == nil:
			return 1
		}
		return cmp.Or(
			cmp.Compare(a.Subject.Filename, b.Subject.Filename),
			cmp.Compare(a.Subject.Start.Byte, b.Subject.Start.Byte),
			cmp.Compare(a.Subject.End.Byte, b.Subject.End.Byte),
		)
	})
}

// secretAttrs are the attributes whose values must never be echoed.
var secretAttrs = []string{"redis_auth", "password", "password_sha256"}

// secretLine finds a secret attribute's value on a line even when the file
// does not parse, so a syntax error next to a password cannot excerpt it.
var secretLine = regexp.MustCompile(`(?m)^[ \t]*(?:` + strings.Join(secretAttrs, "|") + `)[ \t]*=[ \t]*([^\n]*)`)

// redactedFiles returns the file map for diagnostics with secrets masked.
// Masking keeps every byte offset and line break, so ranges stay valid.
func redactedFiles(src []byte, filename string, f *hcl.File) map[string]*hcl.File {
	masked := bytes.Clone(src)
	mask := func(start, end int) {
		for i := max(start, 0); i < end && i < len(masked); i++ {
			if masked[i] != '\n' && masked[i] != '\r' {
				masked[i] = '*'
			}
		}
	}
	for _, m := range secretLine.FindAllSubmatchIndex(masked, -1) {
		mask(m[2], m[3])
	}
	out := &hcl.File{Bytes: masked}
	if f != nil {
		out.Body, out.Nav = f.Body, f.Nav
		if body, ok := f.Body.(*hclsyntax.Body); ok {
			maskSecrets(body, mask)
		}
	}
	return map[string]*hcl.File{filename: out}
}

// maskSecrets masks secret attribute values anywhere in the tree, even
// where they are not allowed: "unsupported argument" excerpts them too.
func maskSecrets(body *hclsyntax.Body, mask func(start, end int)) {
	for name, attr := range body.Attributes {
		if slices.Contains(secretAttrs, name) {
			r := attr.Expr.Range()
			mask(r.Start.Byte, r.End.Byte)
		}
	}
	for _, b := range body.Blocks {
		maskSecrets(b.Body, mask)
	}
}

// twemproxyHints explain nutcracker.yml keys that are spelled differently
// here, for operators converting a configuration by hand.
var twemproxyHints = map[string]string{
	"redis":     `twemproxy's "redis: true" is written protocol = "redis" here (and "redis: false" is protocol = "memcache").`,
	"servers":   `twemproxy's "servers:" list is written as blocks here, one per server: server "127.0.0.1:6379" { weight = 1 }.`,
	"reuseport": `reuseport is a twemproxy development-branch option that nuthatch does not have.`,
	"name":      `A server's name is its block label: server "name" { address = "host:port" }.`,
}

// addTwemproxyHints appends a hint to "Unsupported argument" diagnostics
// for attributes that are twemproxy keys.
func addTwemproxyHints(body *hclsyntax.Body, diags hcl.Diagnostics) {
	for name, attr := range body.Attributes {
		hint, ok := twemproxyHints[name]
		if !ok {
			continue
		}
		for _, d := range diags {
			if d.Summary == "Unsupported argument" && d.Subject != nil && d.Subject.Start.Byte == attr.NameRange.Start.Byte {
				d.Detail = strings.TrimSuffix(d.Detail, ".") + ". " + hint
			}
		}
	}
	for _, b := range body.Blocks {
		addTwemproxyHints(b.Body, diags)
	}
}
