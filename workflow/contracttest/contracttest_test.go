package contracttest_test

import (
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ssobot/ssobot/workflow/contracttest"
)

const secret = "s3cr3t-value-that-must-not-leak"

func TestValidateRequest(t *testing.T) {
	const (
		ak8  = "authentik-openapi-2026.8.yaml"
		ak11 = "authentik-openapi-2026.11.yaml"
		cf   = "cloudflare-openapi.json"
	)
	validProvider := `{"name":"Provider for Grafana","client_id":"abc","client_type":"confidential",
		"authorization_flow":"7c7a6a1e-1b8e-4c8a-9f55-2f1d2b7c1a01","invalidation_flow":"7c7a6a1e-1b8e-4c8a-9f55-2f1d2b7c1a02",
		"redirect_uris":[{"matching_mode":"strict","url":"https://team.cloudflareaccess.com/cdn-cgi/access/callback"}],
		"signing_key":"7c7a6a1e-1b8e-4c8a-9f55-2f1d2b7c1a03","property_mappings":[],"include_claims_in_id_token":true}`
	// matching_mode is not in the enum, and the client secret must stay out of the message.
	invalidProvider := `{"name":"P","authorization_flow":"7c7a6a1e-1b8e-4c8a-9f55-2f1d2b7c1a01","invalidation_flow":"7c7a6a1e-1b8e-4c8a-9f55-2f1d2b7c1a02",
		"client_secret":"` + secret + `","redirect_uris":[{"matching_mode":"` + secret + `","url":"https://x"}]}`
	validIdP := `{"name":"authentik","type":"oidc","config":{"client_id":"abc","client_secret":"` + secret + `",
		"auth_url":"https://auth.example.com/application/o/authorize/","token_url":"https://auth.example.com/application/o/token/",
		"certs_url":"https://auth.example.com/application/o/grafana/jwks/","scopes":["openid","email","profile"],"pkce_enabled":true}}`

	tests := []struct {
		name    string
		file    string
		method  string
		target  string
		body    string
		wantErr []string // substrings of the error; nil: valid
	}{
		{"authentik 2026.8 create provider", ak8, "POST", "https://127.0.0.1:8443/api/v3/providers/oauth2/", validProvider, nil},
		{"authentik 2026.8 invalid provider", ak8, "POST", "https://127.0.0.1:8443/api/v3/providers/oauth2/", invalidProvider, []string{"providers_oauth2_create", "/redirect_uris/0/matching_mode"}},
		{"authentik 2026.11 create provider", ak11, "POST", "https://127.0.0.1:8443/api/v3/providers/oauth2/", validProvider, nil},
		{"authentik 2026.11 invalid provider", ak11, "POST", "https://127.0.0.1:8443/api/v3/providers/oauth2/", invalidProvider, []string{"providers_oauth2_create", "/redirect_uris/0/matching_mode"}},
		{"authentik without base path", ak8, "GET", "http://x/core/applications/grafana/", "", nil},
		{"authentik query", ak8, "GET", "https://h/api/v3/flows/instances/?designation=authorization&slug=a&page=1", "", nil},
		{"authentik bad query", ak8, "GET", "https://h/api/v3/flows/instances/?designation=nope", "", []string{`query parameter "designation"`}},
		{"authentik unknown path", ak8, "GET", "https://h/api/v3/nope/", "", []string{"no operation"}},
		{"authentik method not allowed", ak8, "PUT", "https://h/api/v3/core/users/me/", "", []string{"method not allowed"}},
		{"authentik path param type", ak8, "GET", "https://h/api/v3/providers/oauth2/abc/", "", []string{`path parameter "id"`}},
		{"cloudflare create idp", cf, "POST", "https://127.0.0.1:9/client/v4/accounts/023e105f4ecef8ad9ca31a8372d0c353/access/identity_providers", validIdP, nil},
		{"cloudflare idp at root", cf, "GET", "https://127.0.0.1:9/accounts/023e105f4ecef8ad9ca31a8372d0c353/access/identity_providers?page=2&per_page=50", "", nil},
		{"cloudflare invalid page", cf, "GET", "https://127.0.0.1:9/client/v4/accounts/023e105f4ecef8ad9ca31a8372d0c353/access/identity_providers?page=0", "", []string{`query parameter "page"`}},
		{"cloudflare missing body", cf, "POST", "https://127.0.0.1:9/client/v4/accounts/023e105f4ecef8ad9ca31a8372d0c353/access/identity_providers", "", []string{"body"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := contracttest.LoadOrSkip(t, tt.file)
			r := httptest.NewRequest(tt.method, tt.target, nil)
			if tt.body != "" {
				r.Header.Set("Content-Type", "application/json")
			}
			err := v.ValidateRequest(r, []byte(tt.body))
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("ValidateRequest: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("ValidateRequest: no error, want one")
			}
			var ce *contracttest.Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %T is not a *contracttest.Error", err)
			}
			msg := err.Error()
			t.Log(msg)
			for _, want := range tt.wantErr {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q does not contain %q", msg, want)
				}
			}
			if strings.Contains(msg, secret) {
				t.Errorf("error leaks a body value: %q", msg)
			}
		})
	}
}

func TestValidateResponse(t *testing.T) {
	tests := []struct {
		name    string
		file    string
		target  string
		status  int
		body    string
		wantErr string
	}{
		{"authentik 403", "authentik-openapi-2026.8.yaml", "https://h/api/v3/core/users/me/", 403, `{"detail":"Token invalid/expired"}`, ""},
		{"authentik 403 without detail", "authentik-openapi-2026.8.yaml", "https://h/api/v3/core/users/me/", 403, `{"message":"x"}`, "detail"},
		{"authentik list missing pagination", "authentik-openapi-2026.11.yaml", "https://h/api/v3/flows/instances/", 200, `{"results":[],"autocomplete":{}}`, "pagination"},
		{"cloudflare failure envelope", "cloudflare-openapi.json", "https://h/client/v4/accounts/023e105f4ecef8ad9ca31a8372d0c353/access/identity_providers", 403,
			`{"success":false,"errors":[{"code":10000,"message":"Authentication error"}],"messages":[],"result":null}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := contracttest.LoadOrSkip(t, tt.file)
			r := httptest.NewRequest("GET", tt.target, nil)
			h := http.Header{"Content-Type": {"application/json"}}
			err := v.ValidateResponse(r, nil, tt.status, h, []byte(tt.body))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("ValidateResponse: %v", err)
				}
				return
			}
			t.Log(err)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ValidateResponse = %v, want an error naming %q", err, tt.wantErr)
			}
		})
	}
}

func TestDir(t *testing.T) {
	t.Run("env", func(t *testing.T) {
		d := t.TempDir()
		t.Setenv(contracttest.EnvDir, d)
		got, err := contracttest.Dir()
		if err != nil || got != d {
			t.Fatalf("Dir() = %q, %v; want %q", got, err, d)
		}
	})
	t.Run("env absent", func(t *testing.T) {
		t.Setenv(contracttest.EnvDir, filepath.Join(t.TempDir(), "missing"))
		if _, err := contracttest.Dir(); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("Dir() error = %v, want fs.ErrNotExist", err)
		}
		if _, err := contracttest.Load("authentik-openapi-2026.8.yaml"); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("Load() error = %v, want fs.ErrNotExist", err)
		}
	})
	t.Run("module root", func(t *testing.T) {
		// <tmp>/mod/go.mod and <tmp>/shared/contracts, found from a subdirectory.
		root := t.TempDir()
		sub := filepath.Join(root, "mod", "a", "b")
		contracts := filepath.Join(root, "shared", "contracts")
		for _, d := range []string{sub, contracts} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(root, "mod", "go.mod"), []byte("module x\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Setenv(contracttest.EnvDir, "")
		t.Chdir(sub)
		got, err := contracttest.Dir()
		if err != nil {
			t.Fatal(err)
		}
		if want, _ := filepath.EvalSymlinks(contracts); got != contracts && got != want {
			t.Fatalf("Dir() = %q, want %q", got, contracts)
		}
	})
}

func TestConcurrentUse(t *testing.T) {
	v := contracttest.LoadOrSkip(t, "authentik-openapi-2026.8.yaml")
	body := []byte(`{"name":"Grafana","slug":"grafana","provider":1,"policy_engine_mode":"any"}`)
	bad := []byte(`{"name":"Grafana","slug":"not a slug"}`)
	errc := make(chan error, 40)
	for i := range 40 {
		go func() {
			r := httptest.NewRequest("POST", "https://h/api/v3/core/applications/", nil)
			r.Header.Set("Content-Type", "application/json")
			b := body
			if i%2 == 1 {
				b = bad
			}
			err := v.ValidateRequest(r, b)
			if (err != nil) != (i%2 == 1) {
				errc <- fmt.Errorf("request %d: unexpected result %v", i, err)
				return
			}
			errc <- nil
		}()
	}
	for range 40 {
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}
}
