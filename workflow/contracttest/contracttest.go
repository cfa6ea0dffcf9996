// Package contracttest validates HTTP requests and responses against the
// OpenAPI contracts of the systems ssobot talks to, so that fake servers and
// adapters are held to the real APIs' shapes.
//
// The contracts live outside the module (../shared/contracts next to the
// module root, or $SSOBOT_CONTRACTS). When they are absent, Dir and Load
// return errors wrapping fs.ErrNotExist and tests skip validation.
package contracttest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
)

// EnvDir names the environment variable that overrides the contracts directory.
const EnvDir = "SSOBOT_CONTRACTS"

// Dir locates the contracts: $SSOBOT_CONTRACTS if set, else
// <module root>/../shared/contracts, where the module root is the nearest
// directory above the working directory holding go.mod. The error wraps
// fs.ErrNotExist when the directory is absent.
func Dir() (string, error) {
	if d := os.Getenv(EnvDir); d != "" {
		if err := isDir(d); err != nil {
			return "", fmt.Errorf("contracts dir from $%s: %w", EnvDir, err)
		}
		return d, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("contracts dir: %w", err)
	}
	for dir := wd; ; {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			d := filepath.Join(filepath.Dir(dir), "shared", "contracts")
			if err := isDir(d); err != nil {
				return "", fmt.Errorf("contracts dir: %w", err)
			}
			return d, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("contracts dir: no go.mod above %s: %w", wd, fs.ErrNotExist)
		}
		dir = parent
	}
}

func isDir(d string) error {
	fi, err := os.Stat(d)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory: %w", d, fs.ErrNotExist)
	}
	return nil
}

// Validator checks requests and responses against one contract file.
// It is safe for concurrent use.
type Validator struct {
	file   string
	doc    *openapi3.T
	bases  []string // base paths of the document's servers, e.g. /api/v3
	routes []route
}

type route struct {
	template string
	segs     []string // "" for a literal empty segment; "{x}" for parameters
	literals int
	item     *openapi3.PathItem
}

// Load parses one contract file from Dir(), e.g. "authentik-openapi-2026.8.yaml".
func Load(file string) (*Validator, error) {
	dir, err := Dir()
	if err != nil {
		return nil, err
	}
	return LoadFile(filepath.Join(dir, file))
}

// LoadFile parses a contract file at an explicit path.
func LoadFile(path string) (*Validator, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("load contract %s: %w", filepath.Base(path), err)
	}
	v := &Validator{file: filepath.Base(path), doc: doc}
	for _, s := range doc.Servers {
		// Only the base path matters: the fakes serve on any host and scheme.
		u, err := url.Parse(s.URL)
		if err != nil {
			continue
		}
		if p := strings.TrimSuffix(u.Path, "/"); p != "" {
			v.bases = append(v.bases, p)
		}
	}
	for tmpl, item := range doc.Paths.Map() {
		r := route{template: tmpl, segs: strings.Split(tmpl, "/"), item: item}
		for _, s := range r.segs {
			if !isParam(s) {
				r.literals++
			}
		}
		v.routes = append(v.routes, r)
	}
	// Literal segments win over parameters, as in every router; ties break
	// on the template so matching is deterministic.
	sort.Slice(v.routes, func(i, j int) bool {
		if v.routes[i].literals != v.routes[j].literals {
			return v.routes[i].literals > v.routes[j].literals
		}
		return v.routes[i].template < v.routes[j].template
	})
	return v, nil
}

// LoadOrSkip loads a contract or skips the test when the contracts are absent.
// Any other failure (a broken file) fails the test.
func LoadOrSkip(tb testing.TB, file string) *Validator {
	tb.Helper()
	v, err := Load(file)
	if errors.Is(err, fs.ErrNotExist) {
		tb.Skipf("contract %s not found (set $%s or place the contracts in ../shared/contracts next to the module): %v", file, EnvDir, err)
	}
	if err != nil {
		tb.Fatalf("load contract: %v", err)
	}
	return v
}

// File is the contract's file name.
func (v *Validator) File() string { return v.file }

func isParam(seg string) bool {
	return strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}")
}

// find matches the request path with or without the servers' base path.
func (v *Validator) find(method, escapedPath string) (*routers.Route, map[string]string, error) {
	candidates := make([]string, 0, len(v.bases)+1)
	for _, b := range v.bases {
		if rest, ok := strings.CutPrefix(escapedPath, b); ok && strings.HasPrefix(rest, "/") {
			candidates = append(candidates, rest)
		}
	}
	candidates = append(candidates, escapedPath)
	for _, p := range candidates {
		segs := strings.Split(p, "/")
		for i := range v.routes {
			rt := &v.routes[i]
			params, ok := rt.match(segs)
			if !ok {
				continue
			}
			op := rt.item.GetOperation(method)
			if op == nil {
				return nil, nil, &Error{File: v.file, Method: method, Path: escapedPath, Reasons: []string{"method not allowed by the contract for " + rt.template}}
			}
			return &routers.Route{Spec: v.doc, Path: rt.template, PathItem: rt.item, Method: method, Operation: op}, params, nil
		}
	}
	return nil, nil, &Error{File: v.file, Method: method, Path: escapedPath, Reasons: []string{"no operation in the contract matches this path"}}
}

func (r *route) match(segs []string) (map[string]string, bool) {
	if len(segs) != len(r.segs) {
		return nil, false
	}
	var params map[string]string
	for i, s := range r.segs {
		if isParam(s) {
			if segs[i] == "" {
				return nil, false
			}
			val, err := url.PathUnescape(segs[i])
			if err != nil {
				return nil, false
			}
			if params == nil {
				params = make(map[string]string)
			}
			params[s[1:len(s)-1]] = val
			continue
		}
		if s != segs[i] {
			return nil, false
		}
	}
	return params, true
}

func (v *Validator) options() *openapi3filter.Options {
	return &openapi3filter.Options{
		MultiError: true,
		// Authentication is the fakes' job; the contract only names the scheme.
		AuthenticationFunc: openapi3filter.NoopAuthenticationFunc,
		// Bodies may carry secrets (client_secret): keep values out of messages.
		SchemaValidationOptions: []openapi3.SchemaValidationOption{openapi3.DisableSchemaErrorDetails()},
	}
}

func (v *Validator) input(r *http.Request, body []byte) (*openapi3filter.RequestValidationInput, error) {
	rt, params, err := v.find(r.Method, r.URL.EscapedPath())
	if err != nil {
		return nil, err
	}
	req := r.Clone(r.Context())
	req.Body = io.NopCloser(bytes.NewReader(body))
	req.ContentLength = int64(len(body))
	return &openapi3filter.RequestValidationInput{
		Request:    req,
		PathParams: params,
		Route:      rt,
		Options:    v.options(),
	}, nil
}

// ValidateRequest checks method, path, query, headers and the JSON body of r.
// body is the raw request body (r.Body may already be consumed). Security
// requirements are not checked.
func (v *Validator) ValidateRequest(r *http.Request, body []byte) error {
	in, err := v.input(r, body)
	if err != nil {
		return err
	}
	if err := openapi3filter.ValidateRequest(context.WithoutCancel(r.Context()), in); err != nil {
		return v.wrap(in, false, err)
	}
	return nil
}

// ValidateResponse checks the status and JSON body of the response to r.
// Statuses the contract does not list are accepted.
func (v *Validator) ValidateResponse(r *http.Request, body []byte, status int, header http.Header, respBody []byte) error {
	in, err := v.input(r, body)
	if err != nil {
		return err
	}
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 status,
		Header:                 header,
		Body:                   io.NopCloser(bytes.NewReader(respBody)),
		Options:                in.Options,
	}
	if err := openapi3filter.ValidateResponse(context.WithoutCancel(r.Context()), out); err != nil {
		return v.wrap(in, true, err)
	}
	return nil
}

func (v *Validator) wrap(in *openapi3filter.RequestValidationInput, response bool, err error) error {
	e := &Error{
		File:      v.file,
		Operation: in.Route.Operation.OperationID,
		Method:    in.Request.Method,
		Path:      in.Request.URL.Path,
		Response:  response,
		Err:       err,
	}
	e.Reasons = reasons(nil, "", err)
	return e
}

// Error is a contract violation. Its message names the contract, the
// operation and each offending field, never the values (bodies may hold secrets).
type Error struct {
	File      string
	Operation string // operationId, when the route matched
	Method    string
	Path      string
	Response  bool // the response, not the request, broke the contract
	Reasons   []string
	// Err is kin-openapi's error; its message may include values, so Error
	// does not print it.
	Err error
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "contract %s: ", e.File)
	if e.Response {
		b.WriteString("response to ")
	} else {
		b.WriteString("request ")
	}
	fmt.Fprintf(&b, "%s %s", e.Method, e.Path)
	if e.Operation != "" {
		fmt.Fprintf(&b, " (%s)", e.Operation)
	}
	b.WriteString(": ")
	b.WriteString(strings.Join(e.Reasons, "; "))
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// reasons flattens kin-openapi's error tree into value-free messages.
func reasons(out []string, prefix string, err error) []string {
	switch e := err.(type) {
	case nil:
		return out
	case openapi3.MultiError:
		for _, err := range e {
			out = reasons(out, prefix, err)
		}
		return out
	case *openapi3filter.RequestError:
		p := prefix
		switch {
		case e.Parameter != nil:
			p = fmt.Sprintf("%s %s parameter %q: ", prefix, e.Parameter.In, e.Parameter.Name)
			p = strings.TrimPrefix(p, " ")
		case e.RequestBody != nil:
			p = prefix + "body "
		}
		if e.Err == nil {
			return append(out, p+e.Reason)
		}
		if e.Reason != "" && !strings.Contains(e.Reason, "doesn't match schema") {
			p += e.Reason + ": "
		}
		return reasons(out, p, e.Err)
	case *openapi3filter.ResponseError:
		p := prefix
		if e.Err == nil {
			return append(out, p+e.Reason)
		}
		if e.Reason != "" && !strings.HasPrefix(e.Reason, "response body doesn't match schema") {
			p += e.Reason + ": "
		} else {
			p += "body "
		}
		return reasons(out, p, e.Err)
	case *openapi3filter.SecurityRequirementsError:
		return append(out, prefix+"security requirements not met")
	case *openapi3filter.ParseError:
		msg := e.Reason
		if e.Cause != nil {
			sub := reasons(nil, "", e.Cause)
			if msg != "" && len(sub) > 0 {
				msg += ": "
			}
			msg += strings.Join(sub, "; ")
		}
		if msg == "" {
			msg = "cannot be parsed"
		}
		return append(out, prefix+msg)
	case *openapi3.SchemaError:
		if ms, ok := e.Origin.(openapi3.MultiError); ok {
			return reasons(out, prefix, ms)
		}
		field := "/" + strings.Join(e.JSONPointer(), "/")
		reason := e.Reason
		if reason == "" {
			reason = fmt.Sprintf("does not match %q", e.SchemaField)
		}
		if e.Origin != nil {
			if sub := reasons(nil, "", e.Origin); len(sub) > 0 {
				reason = strings.Join(sub, "; ")
			}
		}
		if strings.HasPrefix(reason, "field ") {
			return append(out, prefix+reason)
		}
		if field == "/" {
			return append(out, prefix+reason)
		}
		return append(out, fmt.Sprintf("%sfield %s: %s", prefix, field, reason))
	}
	if u, ok := err.(interface{ Unwrap() []error }); ok {
		for _, err := range u.Unwrap() {
			out = reasons(out, prefix, err)
		}
		return out
	}
	return append(out, prefix+err.Error())
}
