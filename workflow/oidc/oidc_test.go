package oidc_test

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/ssobot/ssobot/workflow"
	"github.com/ssobot/ssobot/workflow/oidc"
)

func newServer(t *testing.T) (*httptest.Server, *x509.CertPool) {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /application/o/app/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"issuer":"https://%[1]s/application/o/app/","authorization_endpoint":"https://%[1]s/application/o/authorize/","token_endpoint":"https://%[1]s/application/o/token/","jwks_uri":"https://%[1]s/application/o/app/jwks/","id_token_signing_alg_values_supported":["RS256"]}`, r.Host)
	})
	mux.HandleFunc("GET /application/o/app/jwks/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"keys":[{"kid":"k1","kty":"RSA","alg":"RS256","use":"sig","n":"xx","e":"AQAB"}]}`)
	})
	mux.HandleFunc("GET /broken/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, `{"keys":[`) })
	srv := httptest.NewTLSServer(mux)
	t.Cleanup(srv.Close)
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	return srv, pool
}

func TestChecker(t *testing.T) {
	srv, pool := newServer(t)
	ctx := context.Background()
	c := oidc.New(oidc.WithRoots(pool))

	if err := c.CheckTLS(ctx, srv.URL+"/"); err != nil {
		t.Fatalf("CheckTLS with trusted roots: %v", err)
	}
	d, err := c.Discovery(ctx, srv.URL+"/application/o/app/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	if want := srv.URL + "/application/o/app/jwks/"; d.JWKSURI != want || d.AuthorizationEndpoint != srv.URL+"/application/o/authorize/" {
		t.Errorf("discovery = %+v", d)
	}
	keys, err := c.JWKS(ctx, d.JWKSURI)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys.Keys) != 1 || keys.Keys[0].KTY != "RSA" || keys.Keys[0].Alg != "RS256" {
		t.Errorf("keys = %+v", keys)
	}
}

func TestCheckerFailures(t *testing.T) {
	srv, pool := newServer(t)
	plain := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(plain.Close)
	ctx := context.Background()
	trusting := oidc.New(oidc.WithRoots(pool))
	untrusting := oidc.New(oidc.WithRoots(x509.NewCertPool()))

	tests := []struct {
		name      string
		call      func() error
		transient bool
		notFound  bool
	}{
		{"untrusted certificate", func() error { return untrusting.CheckTLS(ctx, srv.URL+"/") }, false, false},
		{"plain http", func() error { return trusting.CheckTLS(ctx, plain.URL+"/") }, false, false},
		{"missing discovery", func() error {
			_, err := trusting.Discovery(ctx, srv.URL+"/application/o/nope/.well-known/openid-configuration")
			return err
		}, false, true},
		{"malformed JWKS", func() error { _, err := trusting.JWKS(ctx, srv.URL+"/broken/"); return err }, true, false},
		{"connection refused", func() error {
			_, err := trusting.JWKS(ctx, "https://127.0.0.1:1/jwks/")
			return err
		}, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if err == nil {
				t.Fatal("no error")
			}
			if got := workflow.IsTransient(err); got != tt.transient {
				t.Errorf("IsTransient(%v) = %v, want %v", err, got, tt.transient)
			}
			if got := errors.Is(err, workflow.ErrNotFound); got != tt.notFound {
				t.Errorf("Is(ErrNotFound) = %v, want %v (%v)", got, tt.notFound, err)
			}
		})
	}
}
