package authentik

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"

	api "goauthentik.io/api/v3"

	"github.com/ssobot/ssobot/workflow"
)

func TestErrorMessage(t *testing.T) {
	tests := []struct {
		name, body, want string
	}{
		{"detail", `{"detail":"Token invalid/expired"}`, "Token invalid/expired"},
		{"fields", `{"slug":["Application with this slug already exists."],"name":["This field is required.","x"]}`,
			"name: This field is required.; name: x; slug: Application with this slug already exists."},
		{"non field first", `{"slug":["a"],"non_field_errors":["whole object"]}`, "whole object; slug: a"},
		{"nested", `{"redirect_uris":[{},{"url":["Enter a valid URL."],"matching_mode":["bad"]}]}`,
			"redirect_uris[1].matching_mode: bad; redirect_uris[1].url: Enter a valid URL."},
		{"code dropped", `{"code":"invalid","slug":["a"]}`, "slug: a"},
		{"only code", `{"code":"invalid"}`, "code: invalid"},
		{"list", `["a","b"]`, "a; b"},
		{"html", `<html>Bad Gateway</html>`, ""},
		{"empty", ``, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := errorMessage([]byte(tt.body)); got != tt.want {
				t.Errorf("errorMessage(%s) = %q, want %q", tt.body, got, tt.want)
			}
		})
	}
}

// newTestClient serves handler over TLS and returns a client for it.
func newTestClient(t *testing.T, handler http.HandlerFunc) *Client {
	t.Helper()
	srv := httptest.NewTLSServer(handler)
	t.Cleanup(srv.Close)
	c, err := New(srv.URL, workflow.NewSecret("token"), srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// A server that ignores the filters returns every flow, page by page: the
// adapter reads all pages and still picks the flow by slug and designation.
func TestListAllPages(t *testing.T) {
	var calls atomic.Int32
	c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		page, _ := strconv.Atoi(r.URL.Query().Get("page"))
		if r.Header.Get("Authorization") != "Bearer token" {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		var results []map[string]any
		for i := range 100 {
			n := (page-1)*100 + i
			results = append(results, map[string]any{"pk": fmt.Sprint(n), "slug": fmt.Sprintf("flow-%d", n), "name": "F", "designation": "authorization"})
		}
		next := page + 1
		if page == 3 {
			next = 0
		}
		writeJSON(w, map[string]any{"pagination": map[string]any{"next": next}, "results": results})
	})
	f, err := c.FlowBySlug(t.Context(), "authorization", "flow-250")
	if err != nil {
		t.Fatalf("FlowBySlug: %v", err)
	}
	if f.PK != "250" {
		t.Errorf("PK = %q, want 250", f.PK)
	}
	if n := calls.Load(); n != 3 {
		t.Errorf("%d calls, want 3", n)
	}
	_, err = c.FlowBySlug(t.Context(), "invalidation", "flow-250")
	if !errors.Is(err, workflow.ErrNotFound) {
		t.Errorf("other designation: %v, want ErrNotFound", err)
	}
}

func TestListNeverEnds(t *testing.T) {
	c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		page, _ := strconv.Atoi(r.URL.Query().Get("page"))
		writeJSON(w, map[string]any{"pagination": map[string]any{"next": page + 1}, "results": []any{map[string]any{"pk": "x", "name": "other"}}})
	})
	_, err := c.CertificateByName(t.Context(), "authentik Self-signed Certificate")
	var apiErr *workflow.APIError
	if !errors.As(err, &apiErr) || errors.Is(err, workflow.ErrNotFound) {
		t.Fatalf("error = %v, want an APIError about paging", err)
	}
}

// A provider body missing fields the generated model requires (as another
// authentik release may send) still decodes: the adapter reads only the
// fields it uses.
func TestTolerantDecoding(t *testing.T) {
	body := `{"pk":5,"name":"Grafana","client_id":"c","client_type":"confidential","client_secret":"shh",
		"authorization_flow":"a","invalidation_flow":"i","signing_key":"k","encryption_key":null,
		"redirect_uris":[{"matching_mode":"strict","url":"https://x/cb","redirect_uri_type":"authorization"}],
		"property_mappings":["m"],"include_claims_in_id_token":true,"assigned_application_slug":"grafana",
		"brand_new_field":{"nested":[1,2,3]},"sub_mode":"a_mode_from_the_future"}`
	var sdk api.OAuth2Provider
	if err := json.Unmarshal([]byte(body), &sdk); err == nil {
		t.Fatal("the generated model accepts the body: the test no longer shows tolerance")
	}
	c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(body))
	})
	p, err := c.GetProvider(t.Context(), 5)
	if err != nil {
		t.Fatalf("GetProvider: %v", err)
	}
	want := workflow.Provider{
		PK: 5, Name: "Grafana", ClientID: "c", ClientType: "confidential", AuthorizationFlow: "a", InvalidationFlow: "i",
		RedirectURIs: []workflow.RedirectURI{{MatchingMode: "strict", URL: "https://x/cb"}}, SigningKey: "k",
		PropertyMappings: []string{"m"}, IncludeClaimsInIDToken: true, AssignedApplicationSlug: "grafana",
	}
	if fmt.Sprint(p) != fmt.Sprint(want) {
		t.Errorf("GetProvider = %+v\nwant %+v", p, want)
	}
	s, err := c.ClientSecret(t.Context(), 5)
	if err != nil || s.Reveal() != "shh" {
		t.Errorf("ClientSecret = %v, %v", s, err)
	}
}

func TestMalformedList(t *testing.T) {
	tests := []struct{ name, body string }{
		{"no results", `{"pagination":{"next":0}}`},
		{"wrong type", `{"pagination":{"next":0},"results":"x"}`},
		{"truncated", `{"pagination":{"next":0},"results":[{"pk":"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write([]byte(tt.body))
			})
			_, err := c.ProviderByName(t.Context(), "x")
			if !errors.Is(err, ErrMalformed) || !workflow.IsTransient(err) {
				t.Errorf("error = %v, want a transient ErrMalformed", err)
			}
		})
	}
}

// The generated client hands a success over undecoded (its models are never
// read); the adapter decodes it, and an error answer keeps its media type.
func TestSuccessNotDecodedByTheGeneratedClient(t *testing.T) {
	body := `{"pk":5,"name":"Grafana","client_id":"c","client_type":"confidential","client_secret":"shh",
		"authorization_flow":"a","invalidation_flow":"i","signing_key":"k","redirect_uris":[],"property_mappings":[],
		"component":"ak-provider-oauth2-form","assigned_application_slug":"grafana","assigned_application_name":"Grafana",
		"assigned_backchannel_application_slug":"","assigned_backchannel_application_name":"",
		"verbose_name":"OAuth2/OpenID Provider","verbose_name_plural":"OAuth2/OpenID Providers","meta_model_name":"authentik_providers_oauth2.oauth2provider"}`
	var sdk api.OAuth2Provider
	if err := json.Unmarshal([]byte(body), &sdk); err != nil {
		t.Fatalf("the generated model refuses the body, so the test cannot tell: %v", err)
	}
	c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/v3/providers/oauth2/6/" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"detail":"No OAuth2Provider matches the given query."}`))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(body))
	})
	model, resp, err := c.api.ProvidersAPI.ProvidersOauth2Retrieve(t.Context(), 5).Execute()
	if model != nil || resp == nil || resp.Header.Get("Content-Type") != "" {
		t.Fatalf("the generated client decoded the answer (model decoded: %t, err %v)", model != nil, err)
	}
	if p, err := c.GetProvider(t.Context(), 5); err != nil || p.Name != "Grafana" {
		t.Fatalf("GetProvider = %+v, %v", p, err)
	}
	_, resp, _ = c.api.ProvidersAPI.ProvidersOauth2Retrieve(t.Context(), 6).Execute()
	if resp == nil || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatal("an error answer lost its media type")
	}
}
