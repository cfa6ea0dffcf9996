package authentik

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	api "goauthentik.io/api/v3"

	"github.com/ssobot/ssobot/workflow"
)

// ErrMalformed: a success response whose body could not be decoded. The
// APIError carrying it has Status 0, so the engine retries: a truncated body
// usually means a proxy or the connection failed mid-response.
var ErrMalformed = errors.New("malformed response")

const system = "authentik"

// decode turns what a generated Execute returned into out or an *APIError.
// The generated client has already buffered the body into resp.Body, also
// when its own decoding failed.
func decode(op, perm string, resp *http.Response, err error, out any) error {
	var gerr *api.GenericOpenAPIError
	if resp == nil || (err != nil && !errors.As(err, &gerr)) {
		if err == nil {
			err = errors.New("no response")
		}
		return &workflow.APIError{System: system, Op: op, Err: err}
	}
	body, rerr := io.ReadAll(resp.Body)
	if rerr != nil {
		return &workflow.APIError{System: system, Op: op, Err: rerr}
	}
	if resp.StatusCode >= 300 || resp.StatusCode < 200 {
		return httpError(op, perm, resp, body)
	}
	// The generated models may have refused the body (a field they mark
	// required is missing in another authentik release); only our own
	// decoding of the fields we use decides.
	if err := json.Unmarshal(body, out); err != nil {
		return malformed(op, resp.StatusCode, err)
	}
	return nil
}

func malformed(op string, status int, err error) error {
	return &workflow.APIError{System: system, Op: op, Err: fmt.Errorf("%w (HTTP %d): %v", ErrMalformed, status, err)}
}

func httpError(op, perm string, resp *http.Response, body []byte) error {
	e := &workflow.APIError{System: system, Op: op, Status: resp.StatusCode, Message: errorMessage(body)}
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		e.Message = redirectMessage(resp)
	}
	if resp.StatusCode == http.StatusForbidden && perm != "" {
		e.Op = fmt.Sprintf("%s (needs %s)", op, perm)
	}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		e.RetryAfter = workflow.ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	}
	return e
}

// redirectMessage explains a redirect, which ssobot does not follow (see
// New): usually a proxy or a login page in front of authentik's API. Only
// the target's scheme and host are named; its path and query may hold a
// login flow's state.
func redirectMessage(resp *http.Response) string {
	where := "another page"
	if u, err := resp.Location(); err == nil && u.Host != "" {
		where = u.Scheme + "://" + u.Host
	}
	return fmt.Sprintf("redirected to %s; ssobot needs direct access to authentik's API at the configured URL (is a proxy or login page in front of it, or does authentik answer at another address?)", where)
}

// errorMessage reads authentik's error body: {"detail": "..."} for 403, 404
// and 429, or a field → messages map for 400. Anything else (an HTML page
// from a proxy) yields "" so that the status speaks alone.
func errorMessage(body []byte) string {
	var v any
	if json.Unmarshal(body, &v) != nil {
		return ""
	}
	obj, ok := v.(map[string]any)
	if !ok {
		var out []string
		flatten(&out, "", v)
		return strings.Join(out, "; ")
	}
	if d, ok := obj["detail"].(string); ok {
		return d
	}
	var out []string
	flatten(&out, "", obj)
	return strings.Join(out, "; ")
}

// flatten renders nested field errors as "field: message" lines, e.g.
// {"redirect_uris":[{"url":["Enter a valid URL."]}]} as
// "redirect_uris[0].url: Enter a valid URL.".
func flatten(out *[]string, field string, v any) {
	switch v := v.(type) {
	case string:
		if field == "" || field == "non_field_errors" {
			*out = append(*out, v)
			return
		}
		*out = append(*out, field+": "+v)
	case []any:
		for i, x := range v {
			if _, ok := x.(string); ok {
				flatten(out, field, x)
				continue
			}
			flatten(out, fmt.Sprintf("%s[%d]", field, i), x)
		}
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			// "code" is a machine code next to the messages.
			if k != "code" || len(v) == 1 {
				keys = append(keys, k)
			}
		}
		slices.SortFunc(keys, func(a, b string) int {
			// Errors about the whole object read best first.
			if (a == "non_field_errors") != (b == "non_field_errors") {
				if a == "non_field_errors" {
					return -1
				}
				return 1
			}
			return strings.Compare(a, b)
		})
		for _, k := range keys {
			sub := k
			if field != "" && k != "non_field_errors" {
				sub = field + "." + k
			} else if field != "" {
				sub = field
			}
			flatten(out, sub, v[k])
		}
	case nil:
	default:
		*out = append(*out, fmt.Sprintf("%s: %v", field, v))
	}
}

// page is one page of any authentik list.
type page[T any] struct {
	Pagination *struct {
		Next float64 `json:"next"`
	} `json:"pagination"`
	Results *[]T `json:"results"`
}

// listAll fetches every page of a list.
func listAll[T any](op, perm string, fetch func(page int32) (*http.Response, error)) ([]T, error) {
	var all []T
	for n := int32(1); ; n++ {
		if n > maxPages {
			return nil, &workflow.APIError{System: system, Op: op, Err: fmt.Errorf("more than %d pages: the server ignores paging", maxPages)}
		}
		resp, err := fetch(n)
		var p page[T]
		if err := decode(op, perm, resp, err, &p); err != nil {
			return nil, err
		}
		if p.Results == nil {
			return nil, malformed(op, resp.StatusCode, errors.New("no results"))
		}
		all = append(all, *p.Results...)
		if p.Pagination == nil || int32(p.Pagination.Next) != n+1 || len(*p.Results) == 0 {
			return all, nil
		}
	}
}

type wireFlow struct {
	PK          string `json:"pk"`
	Slug        string `json:"slug"`
	Name        string `json:"name"`
	Designation string `json:"designation"`
}

type wireCertificate struct {
	PK                  string `json:"pk"`
	Name                string `json:"name"`
	PrivateKeyAvailable bool   `json:"private_key_available"`
}

type wireScopeMapping struct {
	PK        string  `json:"pk"`
	Managed   *string `json:"managed"`
	ScopeName string  `json:"scope_name"`
	Name      string  `json:"name"`
}

// wireProvider has no client_secret field on purpose: only ClientSecret
// decodes it, into a workflow.Secret.
type wireProvider struct {
	PK                int    `json:"pk"`
	Name              string `json:"name"`
	ClientID          string `json:"client_id"`
	ClientType        string `json:"client_type"`
	AuthorizationFlow string `json:"authorization_flow"`
	InvalidationFlow  string `json:"invalidation_flow"`
	RedirectURIs      []struct {
		MatchingMode string `json:"matching_mode"`
		URL          string `json:"url"`
	} `json:"redirect_uris"`
	SigningKey              *string  `json:"signing_key"`
	EncryptionKey           *string  `json:"encryption_key"`
	PropertyMappings        []string `json:"property_mappings"`
	IncludeClaimsInIDToken  bool     `json:"include_claims_in_id_token"`
	AssignedApplicationSlug *string  `json:"assigned_application_slug"`
}

func (p *wireProvider) provider() workflow.Provider {
	out := workflow.Provider{
		PK:                      p.PK,
		Name:                    p.Name,
		ClientID:                p.ClientID,
		ClientType:              p.ClientType,
		AuthorizationFlow:       p.AuthorizationFlow,
		InvalidationFlow:        p.InvalidationFlow,
		SigningKey:              deref(p.SigningKey),
		EncryptionKey:           deref(p.EncryptionKey),
		PropertyMappings:        slices.Clone(p.PropertyMappings),
		IncludeClaimsInIDToken:  p.IncludeClaimsInIDToken,
		AssignedApplicationSlug: deref(p.AssignedApplicationSlug),
	}
	for _, r := range p.RedirectURIs {
		out.RedirectURIs = append(out.RedirectURIs, workflow.RedirectURI{MatchingMode: r.MatchingMode, URL: r.URL})
	}
	return out
}

type wireApplication struct {
	PK               string `json:"pk"`
	Name             string `json:"name"`
	Slug             string `json:"slug"`
	Provider         *int   `json:"provider"`
	PolicyEngineMode string `json:"policy_engine_mode"`
}

func (a *wireApplication) application() workflow.Application {
	out := workflow.Application{PK: a.PK, Name: a.Name, Slug: a.Slug, PolicyEngineMode: a.PolicyEngineMode}
	if a.Provider != nil {
		out.Provider = *a.Provider
	}
	return out
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
