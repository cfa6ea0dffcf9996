package authentiktest_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptrace"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ssobot/ssobot/workflow/authentik/authentiktest"
	"github.com/ssobot/ssobot/workflow/contracttest"
)

const callback = "https://team.cloudflareaccess.com/cdn-cgi/access/callback"

type reply struct {
	status int
	body   map[string]any
	raw    []byte
}

func do(t *testing.T, srv *authentiktest.Server, token, method, path string, body any) reply {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, srv.URL()+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	r := reply{status: resp.StatusCode, raw: raw}
	_ = json.Unmarshal(raw, &r.body)
	return r
}

func newServer(t *testing.T, opts ...authentiktest.Option) *authentiktest.Server {
	t.Helper()
	srv := authentiktest.New(opts...)
	t.Cleanup(srv.Close)
	return srv
}

func noContractErrors(t *testing.T, srv *authentiktest.Server) {
	t.Helper()
	for _, err := range srv.ContractErrors() {
		t.Errorf("contract: %v", err)
	}
}

// createApp makes a provider (signing with key, or none) and an application.
func createApp(t *testing.T, srv *authentiktest.Server, slug string, signed bool) int {
	t.Helper()
	var key any
	if signed {
		key = srv.CertificatePK(authentiktest.SelfSignedCert)
	}
	p := do(t, srv, srv.Token(), "POST", "/api/v3/providers/oauth2/", map[string]any{
		"name":               "Provider for " + slug,
		"authorization_flow": srv.FlowPK(authentiktest.FlowExplicitConsent),
		"invalidation_flow":  srv.FlowPK(authentiktest.FlowInvalidation),
		"redirect_uris":      []any{map[string]any{"matching_mode": "strict", "url": callback}},
		"signing_key":        key,
		"property_mappings":  []string{srv.ScopeMappingPK("goauthentik.io/providers/oauth2/scope-openid")},
	})
	if p.status != http.StatusCreated {
		t.Fatalf("create provider: %d %s", p.status, p.raw)
	}
	pk := int(p.body["pk"].(float64))
	a := do(t, srv, srv.Token(), "POST", "/api/v3/core/applications/", map[string]any{"name": slug, "slug": slug, "provider": pk})
	if a.status != http.StatusCreated {
		t.Fatalf("create application: %d %s", a.status, a.raw)
	}
	return pk
}

func TestAuth(t *testing.T) {
	srv := newServer(t)
	tests := []struct {
		name, token, want string
	}{
		{"no token", "", "Authentication credentials were not provided."},
		{"bad token", "nope", "Token invalid/expired"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, srv, tt.token, "GET", "/api/v3/core/users/me/", nil)
			if r.status != http.StatusForbidden || r.body["detail"] != tt.want {
				t.Errorf("got %d %s, want 403 %q", r.status, r.raw, tt.want)
			}
		})
	}
	if r := do(t, srv, srv.Token(), "GET", "/api/v3/core/users/me/", nil); r.status != http.StatusOK {
		t.Errorf("valid token: %d %s", r.status, r.raw)
	}
	noContractErrors(t, srv)
}

func TestPaging(t *testing.T) {
	srv := newServer(t)
	tests := []struct {
		page                  int
		wantStatus, wantNext  int
		wantResults, wantPrev int
	}{
		{1, 200, 2, 2, 0},
		{2, 200, 3, 2, 1},
		{3, 200, 0, 1, 2},
		{4, 404, 0, 0, 0},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.page), func(t *testing.T) {
			r := do(t, srv, srv.Token(), "GET", fmt.Sprintf("/api/v3/flows/instances/?page=%d&page_size=2", tt.page), nil)
			if r.status != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", r.status, tt.wantStatus, r.raw)
			}
			if r.status != 200 {
				return
			}
			p := r.body["pagination"].(map[string]any)
			if p["next"] != float64(tt.wantNext) || p["previous"] != float64(tt.wantPrev) || p["count"] != float64(5) || p["total_pages"] != float64(3) {
				t.Errorf("pagination = %v", p)
			}
			if n := len(r.body["results"].([]any)); n != tt.wantResults {
				t.Errorf("%d results, want %d", n, tt.wantResults)
			}
		})
	}
	r := do(t, srv, srv.Token(), "GET", "/api/v3/propertymappings/provider/scope/?managed=goauthentik.io/providers/oauth2/scope-openid&managed=goauthentik.io/providers/oauth2/scope-email", nil)
	if n := len(r.body["results"].([]any)); n != 2 {
		t.Errorf("repeated managed filter: %d results, want 2", n)
	}
	noContractErrors(t, srv)
}

func TestContractViolation(t *testing.T) {
	srv := newServer(t, authentiktest.WithValidation(authentiktest.Contract2026_8, authentiktest.Contract2026_11))
	if len(srv.Validating()) == 0 {
		t.Skip("contracts not found: nothing to validate against")
	}
	r := do(t, srv, srv.Token(), "POST", "/api/v3/providers/oauth2/", map[string]any{
		"name": "p", "authorization_flow": srv.FlowPK(authentiktest.FlowExplicitConsent),
		"invalidation_flow": srv.FlowPK(authentiktest.FlowInvalidation),
		"redirect_uris":     []any{map[string]any{"matching_mode": "exact", "url": callback}},
	})
	if r.status != http.StatusBadRequest || !strings.Contains(string(r.raw), "matching_mode") {
		t.Errorf("got %d %s, want 400 naming matching_mode", r.status, r.raw)
	}
	errs := srv.ContractErrors()
	if len(errs) != 1 {
		t.Fatalf("%d contract errors, want 1: %v", len(errs), errs)
	}
	var ce *contracttest.Error
	if !errors.As(errs[0], &ce) || ce.Operation != "providers_oauth2_create" {
		t.Errorf("contract error %v", errs[0])
	}
	if len(srv.Providers()) != 0 {
		t.Error("an invalid request changed state")
	}
}

func TestWithoutContracts(t *testing.T) {
	t.Setenv(contracttest.EnvDir, filepath.Join(t.TempDir(), "absent"))
	srv := newServer(t)
	if v := srv.Validating(); len(v) != 0 {
		t.Errorf("Validating() = %v, want none", v)
	}
	createApp(t, srv, "grafana", true)
	noContractErrors(t, srv)
}

func TestDuplicates(t *testing.T) {
	srv := newServer(t)
	pk := createApp(t, srv, "grafana", true)
	tests := []struct {
		name  string
		path  string
		body  map[string]any
		field string
		want  string
	}{
		{"slug", "/api/v3/core/applications/", map[string]any{"name": "x", "slug": "grafana"}, "slug", "Application with this slug already exists."},
		{"reserved", "/api/v3/core/applications/", map[string]any{"name": "x", "slug": "authorize"}, "slug", "The slug 'authorize' is reserved."},
		{"provider", "/api/v3/core/applications/", map[string]any{"name": "x", "slug": "x", "provider": pk}, "provider", "Application with this provider already exists."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, srv, srv.Token(), "POST", tt.path, tt.body)
			msgs, _ := r.body[tt.field].([]any)
			if r.status != http.StatusBadRequest || len(msgs) != 1 || msgs[0] != tt.want {
				t.Errorf("got %d %s, want 400 {%q: [%q]}", r.status, r.raw, tt.field, tt.want)
			}
		})
	}
	if r := do(t, srv, srv.Token(), "GET", "/api/v3/core/applications/nope/", nil); r.status != 404 || r.body["detail"] != "No Application matches the given query." {
		t.Errorf("missing application: %d %s", r.status, r.raw)
	}
	noContractErrors(t, srv)
}

// Without validation, the fake still answers as authentik does.
func TestRequiredField(t *testing.T) {
	srv := newServer(t, authentiktest.WithValidation())
	r := do(t, srv, srv.Token(), "POST", "/api/v3/providers/oauth2/", map[string]any{
		"name": "y", "authorization_flow": srv.FlowPK(authentiktest.FlowExplicitConsent), "redirect_uris": []any{},
	})
	msgs, _ := r.body["invalidation_flow"].([]any)
	if r.status != http.StatusBadRequest || len(msgs) != 1 || msgs[0] != "This field is required." {
		t.Errorf("got %d %s, want 400 invalidation_flow required", r.status, r.raw)
	}
}

func TestOIDC(t *testing.T) {
	srv := newServer(t)
	createApp(t, srv, "grafana", true)
	createApp(t, srv, "unsigned", false)
	host := strings.TrimPrefix(srv.URL(), "https://")

	t.Run("discovery", func(t *testing.T) {
		r := do(t, srv, "", "GET", "/application/o/grafana/.well-known/openid-configuration", nil)
		if r.status != 200 {
			t.Fatalf("status %d", r.status)
		}
		want := map[string]string{
			"issuer":                 "https://" + host + "/application/o/grafana/",
			"authorization_endpoint": "https://" + host + "/application/o/authorize/",
			"token_endpoint":         "https://" + host + "/application/o/token/",
			"jwks_uri":               "https://" + host + "/application/o/grafana/jwks/",
		}
		for k, v := range want {
			if r.body[k] != v {
				t.Errorf("%s = %v, want %s", k, r.body[k], v)
			}
		}
		if algs := r.body["id_token_signing_alg_values_supported"].([]any); len(algs) != 1 || algs[0] != "RS256" {
			t.Errorf("algs = %v", algs)
		}
	})
	t.Run("jwks", func(t *testing.T) {
		r := do(t, srv, "", "GET", "/application/o/grafana/jwks/", nil)
		keys := r.body["keys"].([]any)
		if len(keys) != 1 {
			t.Fatalf("%d keys, want 1", len(keys))
		}
		k := keys[0].(map[string]any)
		if k["kty"] != "RSA" || k["alg"] != "RS256" || k["use"] != "sig" || k["kid"] == "" {
			t.Errorf("key = %v", k)
		}
		n, err := base64.RawURLEncoding.DecodeString(k["n"].(string))
		if err != nil || new(big.Int).SetBytes(n).BitLen() != 2048 {
			t.Errorf("modulus: %v, %d bits", err, new(big.Int).SetBytes(n).BitLen())
		}
	})
	t.Run("no signing key", func(t *testing.T) {
		r := do(t, srv, "", "GET", "/application/o/unsigned/jwks/", nil)
		if keys := r.body["keys"].([]any); len(keys) != 0 {
			t.Errorf("keys = %v, want none", keys)
		}
		d := do(t, srv, "", "GET", "/application/o/unsigned/.well-known/openid-configuration", nil)
		if algs := d.body["id_token_signing_alg_values_supported"].([]any); len(algs) != 1 || algs[0] != "HS256" {
			t.Errorf("algs = %v, want HS256", algs)
		}
	})
	t.Run("certificate deleted", func(t *testing.T) {
		srv.DeleteCertificate(authentiktest.SelfSignedCert)
		if p := srv.Providers()[0]; p.SigningKey != "" {
			t.Errorf("provider keeps deleted signing key %q", p.SigningKey)
		}
		r := do(t, srv, "", "GET", "/application/o/grafana/jwks/", nil)
		if keys := r.body["keys"].([]any); len(keys) != 0 {
			t.Errorf("keys = %v, want none", keys)
		}
	})
	t.Run("unknown application", func(t *testing.T) {
		if r := do(t, srv, "", "GET", "/application/o/nope/jwks/", nil); r.status != 404 {
			t.Errorf("status %d, want 404", r.status)
		}
	})
	noContractErrors(t, srv)
}

func TestFaults(t *testing.T) {
	t.Run("times", func(t *testing.T) {
		srv := newServer(t)
		srv.AddFault(authentiktest.Fault{Method: "GET", PathContains: "/users/me/", Kind: authentiktest.FaultStatus, Status: 502, Times: 2})
		var got []int
		for range 3 {
			got = append(got, do(t, srv, srv.Token(), "GET", "/api/v3/core/users/me/", nil).status)
		}
		if fmt.Sprint(got) != "[502 502 200]" {
			t.Errorf("statuses %v, want [502 502 200]", got)
		}
		if n := srv.Calls("GET", "/users/me/"); n != 3 {
			t.Errorf("Calls = %d, want 3", n)
		}
	})
	t.Run("apply then reset", func(t *testing.T) {
		srv := newServer(t)
		srv.AddFault(authentiktest.Fault{Method: "POST", PathContains: "/core/applications/", Kind: authentiktest.FaultApplyThenReset, Times: 1})
		req, _ := http.NewRequestWithContext(t.Context(), "POST", srv.URL()+"/api/v3/core/applications/", strings.NewReader(`{"name":"a","slug":"a"}`))
		req.Header.Set("Authorization", "Bearer "+srv.Token())
		req.Header.Set("Content-Type", "application/json")
		if resp, err := srv.Client().Do(req); err == nil {
			resp.Body.Close()
			t.Fatal("request succeeded, want a dropped connection")
		}
		if apps := srv.Applications(); len(apps) != 1 || apps[0].Slug != "a" {
			t.Errorf("applications = %+v, want the one created", apps)
		}
	})
	t.Run("rate", func(t *testing.T) {
		srv := newServer(t)
		srv.SetFaultRate(1, 1, authentiktest.FaultStatus)
		if r := do(t, srv, srv.Token(), "GET", "/api/v3/core/users/me/", nil); r.status != 503 {
			t.Errorf("status %d, want 503", r.status)
		}
		srv.SetFaultRate(0, 1)
		if r := do(t, srv, srv.Token(), "GET", "/api/v3/core/users/me/", nil); r.status != 200 {
			t.Errorf("status %d after rate 0, want 200", r.status)
		}
	})
	t.Run("latency", func(t *testing.T) {
		// The fake answers only once the timer it asked for, of the latency
		// set, fires; at latency 0 it asks for none.
		asked := make(chan time.Duration, 4)
		elapse := make(chan time.Time)
		srv := newServer(t, authentiktest.WithTimer(func(d time.Duration) <-chan time.Time {
			asked <- d
			return elapse
		}))
		const latency = 50 * time.Millisecond
		srv.SetLatency(latency)
		type answer struct {
			status int
			err    error
		}
		done := make(chan answer, 1)
		go func() {
			// Not do: it may call t.Fatal, which only the test's goroutine may.
			req, _ := http.NewRequestWithContext(t.Context(), "GET", srv.URL()+"/api/v3/core/users/me/", nil)
			req.Header.Set("Authorization", "Bearer "+srv.Token())
			resp, err := srv.Client().Do(req)
			if err != nil {
				done <- answer{err: err}
				return
			}
			resp.Body.Close()
			done <- answer{status: resp.StatusCode}
		}()
		select {
		case got := <-asked:
			if got != latency {
				t.Errorf("fake waited %v, want %v", got, latency)
			}
		case a := <-done:
			t.Fatalf("answered (%+v) without waiting", a)
		}
		select {
		case elapse <- time.Time{}:
		case a := <-done:
			t.Fatalf("answered (%+v) before the latency elapsed", a)
		}
		if a := <-done; a.err != nil || a.status != 200 {
			t.Errorf("answer %+v after the latency, want 200", a)
		}

		close(elapse) // from now on a wait would end at once, and show in asked
		srv.SetLatency(0)
		if r := do(t, srv, srv.Token(), "GET", "/api/v3/core/users/me/", nil); r.status != 200 {
			t.Errorf("status %d at latency 0, want 200", r.status)
		}
		select {
		case got := <-asked:
			t.Errorf("latency 0 still waited %v", got)
		default:
		}
	})
	t.Run("latency, real timer", func(t *testing.T) {
		srv := newServer(t)
		srv.SetLatency(time.Millisecond)
		if r := do(t, srv, srv.Token(), "GET", "/api/v3/core/users/me/", nil); r.status != 200 {
			t.Errorf("status %d, want 200", r.status)
		}
	})
	t.Run("close releases held requests", func(t *testing.T) {
		srv := authentiktest.New()
		srv.AddFault(authentiktest.Fault{Kind: authentiktest.FaultTimeout})
		errc := make(chan error, 1)
		wrote := make(chan struct{})
		go func() {
			trace := &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) { close(wrote) }}
			req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", srv.URL()+"/api/v3/core/users/me/", nil)
			resp, err := srv.Client().Do(req)
			if err == nil {
				resp.Body.Close()
			}
			errc <- err
		}()
		<-wrote
		srv.Close() // must not wait for the held request forever
		if err := <-errc; err == nil {
			t.Error("held request succeeded")
		}
	})
}

func TestCertPEM(t *testing.T) {
	srv := newServer(t)
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(srv.CertPEM()) {
		t.Fatal("CertPEM is not a PEM certificate")
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := c.Get(srv.URL() + "/")
	if err != nil {
		t.Fatalf("GET with CertPEM trust: %v", err)
	}
	resp.Body.Close()
}
