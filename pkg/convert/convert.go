// Package convert turns a twemproxy (nutcracker 0.5.0) YAML configuration
// into an equivalent nuthatch HCL configuration.
//
// The converter accepts exactly what nutcracker's src/nc_conf.c accepts:
// the same keys, the same value syntax (bare digits for numbers, true or
// false for booleans, "host:port:weight [name]" servers), the same
// structure rules (one document, no flow collections, anchors or tags, one
// sequence per pool). What twemproxy rejects is reported as ErrInvalid with
// the YAML line; what twemproxy accepts but nuthatch cannot express is
// reported as ErrUnsupported.
//
// Every server keeps its twemproxy placement identity: the output is
// parsed back with pkg/config and each server's PlacementName is compared
// with the name twemproxy derives, so converted pools place every key on
// the same server.
package convert

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Sentinel errors; every *Error wraps one of them.
var (
	// ErrInvalid marks YAML that nutcracker 0.5.0 itself rejects.
	ErrInvalid = errors.New("convert: invalid twemproxy configuration")
	// ErrUnsupported marks a valid twemproxy configuration that nuthatch
	// cannot express, such as a weight above config.MaxWeight.
	ErrUnsupported = errors.New("convert: not expressible in nuthatch")
)

// Error is one problem in the YAML source.
type Error struct {
	File string
	Line int // 1-based; 0 when no line applies
	Msg  string
	Kind error // ErrInvalid or ErrUnsupported
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

// Unwrap returns the sentinel, so errors.Is(err, ErrInvalid) works.
func (e *Error) Unwrap() error { return e.Kind }

// ErrorList is every problem found, in source order. Convert returns one
// when it fails; errors.As finds the individual *Error values.
type ErrorList []*Error

func (l ErrorList) Error() string {
	var b strings.Builder
	for i, e := range l {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Unwrap exposes every *Error to errors.Is and errors.As.
func (l ErrorList) Unwrap() []error {
	out := make([]error, len(l))
	for i, e := range l {
		out[i] = e
	}
	return out
}

// Convert converts the nutcracker YAML in src, read from filename (used
// only in messages and the header comment), to nuthatch HCL. Warnings
// describe keys whose meaning changes slightly or that were dropped; each
// is prefixed by "file:line: ". On failure hcl is nil and err is an
// ErrorList.
func Convert(src []byte, filename string) (hcl []byte, warnings []string, err error) {
	c := &converter{file: filename}
	pools := c.parse(src)
	if len(c.errs) > 0 {
		return nil, nil, c.errs
	}
	out := c.emit(pools)
	c.verify(out, pools)
	if len(c.errs) > 0 {
		return nil, nil, c.errs
	}
	// Warnings are made while emitting, in attribute order; report them
	// in file order.
	slices.SortStableFunc(c.warns, func(a, b *Error) int { return cmp.Compare(a.Line, b.Line) })
	for _, w := range c.warns {
		warnings = append(warnings, w.Error())
	}
	return out, warnings, nil
}

// converter accumulates diagnostics for one conversion.
type converter struct {
	file  string
	errs  ErrorList
	warns []*Error
}

func (c *converter) errorf(kind error, line int, format string, args ...any) {
	c.errs = append(c.errs, &Error{File: c.file, Line: line, Msg: fmt.Sprintf(format, args...), Kind: kind})
}

func (c *converter) warnf(line int, format string, args ...any) {
	c.warns = append(c.warns, &Error{File: c.file, Line: line, Msg: fmt.Sprintf(format, args...)})
}
