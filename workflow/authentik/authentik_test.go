package authentik_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ssobot/ssobot/workflow"
	"github.com/ssobot/ssobot/workflow/authentik"
	"github.com/ssobot/ssobot/workflow/authentik/authentiktest"
)

const callback = "https://team.cloudflareaccess.com/cdn-cgi/access/callback"

// setup starts a fake validating against both contracts and a client for
// it. Unless the test expects them, contract errors fail the test.
func setup(t *testing.T, opts ...authentiktest.Option) (*authentiktest.Server, *authentik.Client) {
	t.Helper()
	opts = append([]authentiktest.Option{authentiktest.WithValidation(authentiktest.Contract2026_8, authentiktest.Contract2026_11)}, opts...)
	srv := authentiktest.New(opts...)
	t.Cleanup(srv.Close)
	if len(srv.Validating()) == 0 {
		t.Log("contracts not found: requests are not validated against authentik's OpenAPI schema")
	}
	t.Cleanup(func() {
		for _, err := range srv.ContractErrors() {
			t.Errorf("contract: %v", err)
		}
	})
	return srv, client(t, srv, srv.Client())
}

func client(t *testing.T, srv *authentiktest.Server, hc *http.Client) *authentik.Client {
	t.Helper()
	c, err := authentik.New(srv.URL(), workflow.NewSecret(srv.Token()), hc)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

// checkErr asserts that err is an *APIError that names no secret.
func checkErr(t *testing.T, srv *authentiktest.Server, err error) *workflow.APIError {
	t.Helper()
	if err == nil {
		t.Fatal("got no error, want one")
	}
	for _, s := range []string{err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err)} {
		if strings.Contains(s, srv.Token()) {
			t.Errorf("error shows the API token: %s", s)
		}
		for _, p := range srv.Providers() {
			if strings.Contains(s, p.ClientSecret) {
				t.Errorf("error shows a client secret: %s", s)
			}
		}
	}
	var api *workflow.APIError
	if !errors.As(err, &api) {
		t.Fatalf("error %v (%T) is not a *workflow.APIError", err, err)
	}
	if api.System != "authentik" {
		t.Errorf("System = %q, want authentik", api.System)
	}
	return api
}

func spec(t *testing.T, srv *authentiktest.Server, name string) workflow.ProviderSpec {
	t.Helper()
	return workflow.ProviderSpec{
		Name:              name,
		ClientID:          "client-" + name,
		ClientType:        "confidential",
		AuthorizationFlow: srv.FlowPK(authentiktest.FlowExplicitConsent),
		InvalidationFlow:  srv.FlowPK(authentiktest.FlowInvalidation),
		RedirectURIs:      []workflow.RedirectURI{{MatchingMode: "strict", URL: callback}},
		SigningKey:        srv.CertificatePK(authentiktest.SelfSignedCert),
		PropertyMappings: []string{
			srv.ScopeMappingPK(workflow.ScopeOpenID),
			srv.ScopeMappingPK(workflow.ScopeEmail),
			srv.ScopeMappingPK(workflow.ScopeProfile),
		},
		IncludeClaimsInIDToken: true,
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		name    string
		url     string
		token   string
		wantErr bool
	}{
		{"https", "https://auth.example.com", "t", false},
		{"trailing slash", "https://auth.example.com/", "t", false},
		{"sub path", "https://example.com/authentik", "t", false},
		{"http", "http://auth.example.com", "t", true},
		{"relative", "auth.example.com", "t", true},
		{"no host", "https://", "t", true},
		{"api path", "https://auth.example.com/api/v3/", "t", true},
		{"credentials", "https://u:p@auth.example.com", "t", true},
		{"empty token", "https://auth.example.com", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := authentik.New(tt.url, workflow.NewSecret(tt.token), nil)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("New(%q) = nil error, want one", tt.url)
				}
				if !errors.Is(err, workflow.ErrInvalidRequest) {
					t.Errorf("error %v does not wrap ErrInvalidRequest", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("New(%q): %v", tt.url, err)
			}
			if strings.HasSuffix(c.BaseURL(), "/") {
				t.Errorf("BaseURL() = %q keeps a trailing slash", c.BaseURL())
			}
		})
	}
}

func TestHappyPath(t *testing.T) {
	for _, version := range []string{"2026.8", "2026.11"} {
		t.Run(version, func(t *testing.T) {
			srv, c := setup(t)
			srv.SetSchemaVersion(version)
			ctx := t.Context()

			me, err := c.Me(ctx)
			if err != nil {
				t.Fatalf("Me: %v", err)
			}
			if me.Username != authentiktest.AdminUsername || me.PK == 0 {
				t.Errorf("Me = %+v", me)
			}

			for _, f := range []struct{ designation, slug string }{
				{"authorization", authentiktest.FlowExplicitConsent},
				{"authorization", authentiktest.FlowImplicitConsent},
				{"invalidation", authentiktest.FlowInvalidation},
			} {
				got, err := c.FlowBySlug(ctx, f.designation, f.slug)
				if err != nil {
					t.Fatalf("FlowBySlug(%s): %v", f.slug, err)
				}
				if got.PK != srv.FlowPK(f.slug) || got.Slug != f.slug || got.Designation != f.designation || got.Name == "" {
					t.Errorf("FlowBySlug(%s) = %+v", f.slug, got)
				}
			}

			cert, err := c.CertificateByName(ctx, authentiktest.SelfSignedCert)
			if err != nil {
				t.Fatalf("CertificateByName: %v", err)
			}
			if cert.PK != srv.CertificatePK(authentiktest.SelfSignedCert) || !cert.HasKey {
				t.Errorf("CertificateByName = %+v", cert)
			}

			maps, err := c.ScopeMappings(ctx, workflow.RequiredScopes)
			if err != nil {
				t.Fatalf("ScopeMappings: %v", err)
			}
			if len(maps) != 3 {
				t.Fatalf("ScopeMappings returned %d mappings, want 3: %+v", len(maps), maps)
			}
			for _, m := range maps {
				if m.PK != srv.ScopeMappingPK(m.Managed) || m.ScopeName == "" {
					t.Errorf("mapping %+v", m)
				}
			}

			sp := spec(t, srv, "Provider for Grafana")
			created, err := c.CreateProvider(ctx, sp)
			if err != nil {
				t.Fatalf("CreateProvider: %v", err)
			}
			if created.PK == 0 || created.ClientID != sp.ClientID || created.SigningKey != sp.SigningKey ||
				created.EncryptionKey != "" || created.ClientType != "confidential" || created.AssignedApplicationSlug != "" ||
				len(created.PropertyMappings) != 3 || !created.IncludeClaimsInIDToken ||
				len(created.RedirectURIs) != 1 || created.RedirectURIs[0] != sp.RedirectURIs[0] {
				t.Errorf("CreateProvider = %+v", created)
			}
			stored := srv.Providers()
			if len(stored) != 1 {
				t.Fatalf("server holds %d providers, want 1", len(stored))
			}
			// authentik generated the secret: the adapter sent none.
			if len(stored[0].ClientSecret) != 128 {
				t.Errorf("client secret has %d characters, want authentik's generated 128", len(stored[0].ClientSecret))
			}

			for name, get := range map[string]func() (workflow.Provider, error){
				"ProviderByClientID": func() (workflow.Provider, error) { return c.ProviderByClientID(ctx, sp.ClientID) },
				"ProviderByName":     func() (workflow.Provider, error) { return c.ProviderByName(ctx, sp.Name) },
				"GetProvider":        func() (workflow.Provider, error) { return c.GetProvider(ctx, created.PK) },
			} {
				p, err := get()
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if p.PK != created.PK || p.Name != sp.Name || p.SigningKey != sp.SigningKey {
					t.Errorf("%s = %+v, want provider %d", name, p, created.PK)
				}
			}

			secret, err := c.ClientSecret(ctx, created.PK)
			if err != nil {
				t.Fatalf("ClientSecret: %v", err)
			}
			if secret.Reveal() != stored[0].ClientSecret {
				t.Error("ClientSecret does not return the provider's secret")
			}
			if s := fmt.Sprintf("%v %+v", secret, created); strings.Contains(s, stored[0].ClientSecret) {
				t.Error("the secret shows when printed")
			}

			app, err := c.CreateApplication(ctx, workflow.ApplicationSpec{Name: "Grafana", Slug: "grafana", Provider: created.PK, PolicyEngineMode: "any"})
			if err != nil {
				t.Fatalf("CreateApplication: %v", err)
			}
			want := workflow.Application{PK: app.PK, Name: "Grafana", Slug: "grafana", Provider: created.PK, PolicyEngineMode: "any"}
			if app.PK == "" || app != want {
				t.Errorf("CreateApplication = %+v, want %+v", app, want)
			}
			got, err := c.ApplicationBySlug(ctx, "grafana")
			if err != nil {
				t.Fatalf("ApplicationBySlug: %v", err)
			}
			if got != app {
				t.Errorf("ApplicationBySlug = %+v, want %+v", got, app)
			}
			if srv.Calls("GET", "/api/v3/core/applications/grafana/") != 1 {
				t.Error("ApplicationBySlug did not use the detail endpoint")
			}
			p, err := c.GetProvider(ctx, created.PK)
			if err != nil {
				t.Fatalf("GetProvider: %v", err)
			}
			if p.AssignedApplicationSlug != "grafana" {
				t.Errorf("AssignedApplicationSlug = %q, want grafana", p.AssignedApplicationSlug)
			}
		})
	}
}

func TestCreateProviderSendsEmptyMappings(t *testing.T) {
	srv, c := setup(t)
	sp := spec(t, srv, "no mappings")
	sp.PropertyMappings = nil
	p, err := c.CreateProvider(t.Context(), sp)
	if err != nil {
		t.Fatalf("CreateProvider with nil mappings: %v", err)
	}
	if len(p.PropertyMappings) != 0 {
		t.Errorf("PropertyMappings = %v, want none", p.PropertyMappings)
	}
}

func TestNotFound(t *testing.T) {
	srv, c := setup(t)
	ctx := t.Context()
	srv.DeleteCertificate(authentiktest.SelfSignedCert)
	srv.DeleteFlow(authentiktest.FlowInvalidation)

	tests := []struct {
		name string
		call func() error
	}{
		{"flow deleted", func() error { _, err := c.FlowBySlug(ctx, "invalidation", authentiktest.FlowInvalidation); return err }},
		{"flow of other designation", func() error {
			_, err := c.FlowBySlug(ctx, "invalidation", authentiktest.FlowExplicitConsent)
			return err
		}},
		{"certificate", func() error { _, err := c.CertificateByName(ctx, authentiktest.SelfSignedCert); return err }},
		{"certificate by prefix", func() error { _, err := c.CertificateByName(ctx, "authentik"); return err }},
		{"provider by client id", func() error { _, err := c.ProviderByClientID(ctx, "nope"); return err }},
		{"provider by name", func() error { _, err := c.ProviderByName(ctx, "nope"); return err }},
		{"provider by id", func() error { _, err := c.GetProvider(ctx, 999); return err }},
		{"client secret", func() error { _, err := c.ClientSecret(ctx, 999); return err }},
		{"application", func() error { _, err := c.ApplicationBySlug(ctx, "nope"); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if !errors.Is(err, workflow.ErrNotFound) {
				t.Fatalf("error = %v, want ErrNotFound", err)
			}
			if workflow.IsTransient(err) {
				t.Errorf("not found is transient: %v", err)
			}
		})
	}

	t.Run("404 keeps detail", func(t *testing.T) {
		_, err := c.ApplicationBySlug(ctx, "nope")
		api := checkErr(t, srv, err)
		if api.Status != http.StatusNotFound || api.Message != "No Application matches the given query." {
			t.Errorf("APIError = %+v", api)
		}
	})

	t.Run("missing scope mappings", func(t *testing.T) {
		srv.DeleteScopeMapping(workflow.ScopeEmail)
		maps, err := c.ScopeMappings(ctx, workflow.RequiredScopes)
		if err != nil {
			t.Fatalf("ScopeMappings: %v", err)
		}
		if len(maps) != 2 {
			t.Fatalf("got %d mappings, want 2", len(maps))
		}
		for _, m := range maps {
			if m.Managed == workflow.ScopeEmail {
				t.Error("deleted mapping returned")
			}
		}
	})
}

func TestForbidden(t *testing.T) {
	srv, c := setup(t)
	ctx := t.Context()

	t.Run("bad token", func(t *testing.T) {
		bad, err := authentik.New(srv.URL(), workflow.NewSecret("wrong-token"), srv.Client())
		if err != nil {
			t.Fatal(err)
		}
		_, err = bad.Me(ctx)
		api := checkErr(t, srv, err)
		if api.Status != http.StatusForbidden || api.Message != "Token invalid/expired" || api.Transient() {
			t.Errorf("APIError = %+v", api)
		}
		if strings.Contains(err.Error(), "wrong-token") {
			t.Errorf("error shows the token: %v", err)
		}
	})

	tests := []struct {
		perm string
		call func() error
	}{
		{"view_flow", func() error {
			_, err := c.FlowBySlug(ctx, "authorization", authentiktest.FlowExplicitConsent)
			return err
		}},
		{"view_certificatekeypair", func() error { _, err := c.CertificateByName(ctx, authentiktest.SelfSignedCert); return err }},
		{"view_scopemapping", func() error { _, err := c.ScopeMappings(ctx, workflow.RequiredScopes); return err }},
		{"add_oauth2provider", func() error { _, err := c.CreateProvider(ctx, spec(t, srv, "p")); return err }},
		{"view_oauth2provider", func() error { _, err := c.ProviderByClientID(ctx, "x"); return err }},
		{"add_application", func() error {
			_, err := c.CreateApplication(ctx, workflow.ApplicationSpec{Name: "A", Slug: "a", Provider: 1})
			return err
		}},
		{"view_application", func() error { _, err := c.ApplicationBySlug(ctx, "a"); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.perm, func(t *testing.T) {
			srv.DenyPermission(tt.perm)
			api := checkErr(t, srv, tt.call())
			if api.Status != http.StatusForbidden || api.Transient() {
				t.Errorf("APIError = %+v, want a permanent 403", api)
			}
			if api.Message != "You do not have permission to perform this action." {
				t.Errorf("Message = %q, want authentik's detail", api.Message)
			}
			if !strings.Contains(api.Error(), "needs "+tt.perm) {
				t.Errorf("error %q does not name the permission %s", api.Error(), tt.perm)
			}
		})
	}
}

func TestValidationErrors(t *testing.T) {
	srv, c := setup(t)
	ctx := t.Context()
	p, err := c.CreateProvider(ctx, spec(t, srv, "Grafana"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateApplication(ctx, workflow.ApplicationSpec{Name: "Grafana", Slug: "grafana", Provider: p.PK}); err != nil {
		t.Fatal(err)
	}
	other, err := c.CreateProvider(ctx, spec(t, srv, "Other"))
	if err != nil {
		t.Fatal(err)
	}
	badRegex := spec(t, srv, "regex")
	badRegex.RedirectURIs = []workflow.RedirectURI{{MatchingMode: "regex", URL: "https://(unclosed"}}
	sameClientID := spec(t, srv, "same client id")
	sameClientID.ClientID = p.ClientID
	sameName := spec(t, srv, "Grafana")
	sameName.ClientID = "another-client-id"

	tests := []struct {
		name string
		call func() error
		want string
	}{
		{"duplicate slug", func() error {
			_, err := c.CreateApplication(ctx, workflow.ApplicationSpec{Name: "G2", Slug: "grafana", Provider: other.PK})
			return err
		}, "slug: Application with this slug already exists."},
		{"reserved slug", func() error {
			_, err := c.CreateApplication(ctx, workflow.ApplicationSpec{Name: "T", Slug: "token", Provider: other.PK})
			return err
		}, "slug: The slug 'token' is reserved."},
		{"provider taken", func() error {
			_, err := c.CreateApplication(ctx, workflow.ApplicationSpec{Name: "G3", Slug: "g3", Provider: p.PK})
			return err
		}, "provider: Application with this provider already exists."},
		{"duplicate provider name", func() error { _, err := c.CreateProvider(ctx, sameName); return err },
			"name: Provider with this name already exists."},
		{"duplicate client id", func() error { _, err := c.CreateProvider(ctx, sameClientID); return err },
			"client_id: OAuth2/OpenID Provider with this Client ID already exists."},
		{"nested field", func() error { _, err := c.CreateProvider(ctx, badRegex); return err },
			"redirect_uris[0].url: Invalid Regular Expression Syntax"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			api := checkErr(t, srv, tt.call())
			if api.Status != http.StatusBadRequest || api.Transient() {
				t.Errorf("APIError = %+v, want a permanent 400", api)
			}
			if api.Message != tt.want {
				t.Errorf("Message = %q, want %q", api.Message, tt.want)
			}
		})
	}
}

func TestTransient(t *testing.T) {
	tests := []struct {
		name       string
		fault      authentiktest.Fault
		timeout    time.Duration
		wantStatus int
		wantRetry  time.Duration
		check      func(t *testing.T, api *workflow.APIError)
	}{
		{name: "429", fault: authentiktest.Fault{Kind: authentiktest.FaultStatus, Status: 429, RetryAfter: "7"}, wantStatus: 429, wantRetry: 7 * time.Second,
			check: func(t *testing.T, api *workflow.APIError) {
				if !strings.Contains(api.Message, "throttled") {
					t.Errorf("Message = %q", api.Message)
				}
			}},
		{name: "500", fault: authentiktest.Fault{Kind: authentiktest.FaultStatus, Status: 500}, wantStatus: 500},
		{name: "502", fault: authentiktest.Fault{Kind: authentiktest.FaultStatus, Status: 502}, wantStatus: 502},
		{name: "503", fault: authentiktest.Fault{Kind: authentiktest.FaultStatus, Status: 503, RetryAfter: "2"}, wantStatus: 503, wantRetry: 2 * time.Second},
		{name: "reset", fault: authentiktest.Fault{Kind: authentiktest.FaultReset}},
		{name: "timeout", fault: authentiktest.Fault{Kind: authentiktest.FaultTimeout}, timeout: 200 * time.Millisecond,
			check: func(t *testing.T, api *workflow.APIError) {
				var ne interface{ Timeout() bool }
				if !errors.As(api.Err, &ne) || !ne.Timeout() {
					t.Errorf("Err = %v, want a timeout", api.Err)
				}
			}},
		{name: "malformed", fault: authentiktest.Fault{Kind: authentiktest.FaultMalformed},
			check: func(t *testing.T, api *workflow.APIError) {
				if !errors.Is(api, authentik.ErrMalformed) {
					t.Errorf("error %v does not wrap ErrMalformed", api)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, c := setup(t)
			if tt.timeout > 0 {
				hc := *srv.Client()
				hc.Timeout = tt.timeout
				c = client(t, srv, &hc)
			}
			f := tt.fault
			f.PathContains = "/flows/instances/"
			srv.AddFault(f)
			_, err := c.FlowBySlug(t.Context(), "authorization", authentiktest.FlowExplicitConsent)
			api := checkErr(t, srv, err)
			if api.Status != tt.wantStatus {
				t.Errorf("Status = %d, want %d (%v)", api.Status, tt.wantStatus, err)
			}
			if !workflow.IsTransient(err) {
				t.Errorf("IsTransient(%v) = false", err)
			}
			if got := workflow.RetryAfter(err); got != tt.wantRetry {
				t.Errorf("RetryAfter = %v, want %v", got, tt.wantRetry)
			}
			if errors.Is(err, workflow.ErrNotFound) {
				t.Errorf("a failure reads as not found: %v", err)
			}
			if tt.check != nil {
				tt.check(t, api)
			}
		})
	}
}

// A create whose answer is lost is found again by its client ID: the
// engine's reconcile-before-retry works against this adapter.
func TestCreateAnswerLost(t *testing.T) {
	srv, c := setup(t)
	ctx := t.Context()
	srv.AddFault(authentiktest.Fault{Method: "POST", PathContains: "/providers/oauth2/", Kind: authentiktest.FaultApplyThenReset, Times: 1})
	sp := spec(t, srv, "lost")
	_, err := c.CreateProvider(ctx, sp)
	checkErr(t, srv, err)
	if !workflow.IsTransient(err) {
		t.Fatalf("lost answer is not transient: %v", err)
	}
	p, err := c.ProviderByClientID(ctx, sp.ClientID)
	if err != nil {
		t.Fatalf("ProviderByClientID after lost answer: %v", err)
	}
	if p.Name != sp.Name {
		t.Errorf("found %+v", p)
	}
	if n := len(srv.Providers()); n != 1 {
		t.Errorf("%d providers, want 1", n)
	}
}

func TestNoSigningKey(t *testing.T) {
	t.Run("response without key", func(t *testing.T) {
		srv, c := setup(t)
		srv.IgnoreSigningKey()
		p, err := c.CreateProvider(t.Context(), spec(t, srv, "unsigned"))
		if !errors.Is(err, authentik.ErrNoSigningKey) {
			t.Fatalf("error = %v, want ErrNoSigningKey", err)
		}
		if !strings.Contains(err.Error(), "HS256") {
			t.Errorf("error %q does not explain HS256", err)
		}
		if p.PK == 0 {
			t.Error("the created provider is not returned with the error")
		}
		if workflow.IsTransient(err) {
			t.Error("a provider without signing key is transient")
		}
	})
	t.Run("spec without key", func(t *testing.T) {
		srv, c := setup(t)
		sp := spec(t, srv, "unsigned")
		sp.SigningKey = ""
		_, err := c.CreateProvider(t.Context(), sp)
		if !errors.Is(err, authentik.ErrNoSigningKey) || !errors.Is(err, workflow.ErrInvalidRequest) {
			t.Fatalf("error = %v, want ErrNoSigningKey and ErrInvalidRequest", err)
		}
		if n := srv.Calls("POST", "/providers/oauth2/"); n != 0 {
			t.Errorf("%d create calls made, want 0", n)
		}
	})
}

func TestInvalidArguments(t *testing.T) {
	srv, c := setup(t)
	ctx := t.Context()
	tests := []struct {
		name string
		call func() error
	}{
		{"designation", func() error { _, err := c.FlowBySlug(ctx, "nope", "x"); return err }},
		{"provider id", func() error { _, err := c.GetProvider(ctx, 0); return err }},
		{"slug with slash", func() error { _, err := c.ApplicationBySlug(ctx, "../users"); return err }},
		{"empty slug", func() error { _, err := c.ApplicationBySlug(ctx, ""); return err }},
		{"matching mode", func() error {
			sp := spec(t, srv, "x")
			sp.RedirectURIs[0].MatchingMode = "exact"
			_, err := c.CreateProvider(ctx, sp)
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); !errors.Is(err, workflow.ErrInvalidRequest) {
				t.Errorf("error = %v, want ErrInvalidRequest", err)
			}
		})
	}
	if n := srv.Calls("", "/api/v3/"); n != 0 {
		t.Errorf("%d API calls made for invalid arguments, want 0", n)
	}
}

func TestContextCancelled(t *testing.T) {
	srv, c := setup(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := c.Me(ctx)
	api := checkErr(t, srv, err)
	if !errors.Is(api, context.Canceled) {
		t.Errorf("error %v does not wrap context.Canceled", err)
	}
}

// TestRedirectIsNotFollowed: a proxy or login page in front of authentik's
// API answers with a redirect. The client's transport adds the token to
// every request, so following it would hand the token to the redirect's
// host; the redirect must come back as a permanent error naming the host.
func TestRedirectIsNotFollowed(t *testing.T) {
	const token = "ak-redirect-test-token-0123456789"
	var elsewhere atomic.Int32
	login := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elsewhere.Add(1)
		if got := r.Header.Get("Authorization"); got != "" {
			t.Errorf("the redirect's host got Authorization %q", got)
		}
		fmt.Fprint(w, "<html>sign in</html>")
	}))
	defer login.Close()
	proxy := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, login.URL+"/sign-in?state=s3cr3t-state", http.StatusFound)
	}))
	defer proxy.Close()

	// httptest's servers share one certificate: the client trusts both.
	c, err := authentik.New(proxy.URL, workflow.NewSecret(token), proxy.Client())
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Me(t.Context())
	var api *workflow.APIError
	if !errors.As(err, &api) {
		t.Fatalf("Me: %v, want an *APIError", err)
	}
	if api.Status != http.StatusFound || api.Transient() {
		t.Errorf("APIError = %+v, want a permanent 302", api)
	}
	if msg := err.Error(); !strings.Contains(msg, "redirected to "+login.URL) || strings.Contains(msg, "s3cr3t-state") || strings.Contains(msg, token) {
		t.Errorf("error %q: want the redirect's scheme and host, not its query or the token", msg)
	}
	if n := elsewhere.Load(); n != 0 {
		t.Errorf("the redirect was followed %d times", n)
	}
}

// TestLookupsCheckWhatTheServerReturns: a server that ignores a list
// filter hands back other objects; a look-up that finds none matching is
// ErrNotFound, never one of those (else the engine would adopt another's
// provider as its own).
func TestLookupsCheckWhatTheServerReturns(t *testing.T) {
	tests := []struct {
		name    string
		ignored []string
		call    func(ctx context.Context, c *authentik.Client) (any, error)
	}{
		{"provider by client id", []string{"client_id"}, func(ctx context.Context, c *authentik.Client) (any, error) {
			return c.ProviderByClientID(ctx, "client-other")
		}},
		{"provider by name", []string{"name"}, func(ctx context.Context, c *authentik.Client) (any, error) {
			return c.ProviderByName(ctx, "other")
		}},
		{"certificate by name", []string{"name"}, func(ctx context.Context, c *authentik.Client) (any, error) {
			return c.CertificateByName(ctx, "other")
		}},
		{"flow by slug", []string{"slug"}, func(ctx context.Context, c *authentik.Client) (any, error) {
			return c.FlowBySlug(ctx, "invalidation", "other")
		}},
		{"flow by designation", []string{"designation"}, func(ctx context.Context, c *authentik.Client) (any, error) {
			return c.FlowBySlug(ctx, "invalidation", authentiktest.FlowExplicitConsent)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, c := setup(t)
			ctx := t.Context()
			// Someone else's provider, which an unfiltered list returns.
			if _, err := c.CreateProvider(ctx, spec(t, srv, "mine")); err != nil {
				t.Fatal(err)
			}
			srv.IgnoreFilters(tt.ignored...)
			got, err := tt.call(ctx, c)
			if !errors.Is(err, workflow.ErrNotFound) {
				t.Fatalf("got %+v, %v; want ErrNotFound", got, err)
			}
		})
	}
}
