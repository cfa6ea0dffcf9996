package workflow_test

import (
	"strings"
	"testing"

	"github.com/ssobot/ssobot/workflow"
	"github.com/ssobot/ssobot/workflow/authentik/authentiktest"
	"github.com/ssobot/ssobot/workflow/cloudflare/cloudflaretest"
)

// TestVerifyCatchesDrift: verify reads back what Cloudflare and authentik
// hold and fails the run on each setting that changed since it was made
// (someone editing the provider during the approval window, the login
// method in the dashboard, or authentik serving other endpoints or keys),
// naming the mismatch.
func TestVerifyCatchesDrift(t *testing.T) {
	tests := []struct {
		name string
		// provider changes the provider before the Cloudflare gate opens;
		// certPK is the seeded certificate's.
		provider func(p *authentiktest.Provider, certPK string)
		// loginMethod changes the login method right after its create.
		loginMethod func(m *cloudflaretest.IdentityProvider)
		// oidc changes what authentik's public endpoints serve.
		oidc func(kind string, doc map[string]any)
		want string
	}{
		{name: "login method PKCE off",
			loginMethod: func(m *cloudflaretest.IdentityProvider) { m.Config.PKCEEnabled = false },
			want:        "the login method has PKCE off"},
		{name: "login method email claim",
			loginMethod: func(m *cloudflaretest.IdentityProvider) { m.Config.EmailClaimName = "upn" },
			want:        `the login method's email claim is "upn", want "email"`},
		{name: "login method scopes",
			loginMethod: func(m *cloudflaretest.IdentityProvider) { m.Config.Scopes = []string{"openid", "profile"} },
			want:        "the login method lacks scope email"},
		{name: "claims not in the ID token",
			provider: func(p *authentiktest.Provider, _ string) { p.IncludeClaimsInIDToken = false },
			want:     "the provider does not include claims in the ID token"},
		{name: "redirect URI missing",
			provider: func(p *authentiktest.Provider, _ string) {
				p.RedirectURIs = []authentiktest.RedirectURI{{MatchingMode: "strict", URL: "https://other.cloudflareaccess.com/cdn-cgi/access/callback"}}
			},
			want: "with strict matching"},
		{name: "redirect URI not strict",
			provider: func(p *authentiktest.Provider, _ string) {
				for i := range p.RedirectURIs {
					p.RedirectURIs[i].MatchingMode = "regex"
				}
			},
			want: "with strict matching"},
		{name: "provider has an encryption key",
			provider: func(p *authentiktest.Provider, certPK string) { p.EncryptionKey = certPK },
			want:     "the provider has an encryption key"},
		{name: "provider lacks a signing key",
			provider: func(p *authentiktest.Provider, _ string) { p.SigningKey = "" },
			want:     "the provider has no signing key"},
		// The key stays an RSA key: only its algorithm says it is HMAC.
		{name: "JWKS with only HS keys",
			oidc: func(kind string, doc map[string]any) {
				if kind == "jwks" {
					for _, k := range doc["keys"].([]map[string]any) {
						k["alg"] = "HS256"
					}
				}
			},
			want: "has no RS or ES signing key"},
		{name: "JWKS with only encryption keys",
			oidc: func(kind string, doc map[string]any) {
				if kind == "jwks" {
					for _, k := range doc["keys"].([]map[string]any) {
						k["use"] = "enc"
					}
				}
			},
			want: "has no RS or ES signing key"},
		{name: "discovery token_endpoint",
			oidc: func(kind string, doc map[string]any) {
				if kind == "discovery" {
					doc["token_endpoint"] = "https://proxy.example.com/application/o/token/"
				}
			},
			want: `the discovery document's token_endpoint is "https://proxy.example.com/application/o/token/"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.start(func(c *workflow.Config) {
				if tt.loginMethod == nil {
					return
				}
				// Called by the driver after the login method's result is
				// stored and before verify starts.
				c.CrashHook = func(p workflow.CrashPoint, s workflow.StepName) bool {
					if p == workflow.CrashAfterResult && s == workflow.StepCloudflareLoginMethod {
						for _, m := range h.cf.IdentityProviders() {
							if !h.cf.EditIdentityProvider(m.ID, tt.loginMethod) {
								t.Errorf("login method %s vanished", m.ID)
							}
						}
					}
					return false
				}
			})
			if tt.oidc != nil {
				h.ak.RewriteOIDC(tt.oidc)
			}
			r := h.newRun(workflow.Request{})
			h.approve(r.ID, workflow.GateAuthentik)
			h.feed.waitGate(t, r.ID, workflow.GateCloudflare)
			if tt.provider != nil {
				provs := h.ak.Providers()
				if len(provs) != 1 {
					t.Fatalf("%d providers before the Cloudflare gate, want 1", len(provs))
				}
				cert := h.ak.CertificatePK(authentiktest.SelfSignedCert)
				h.ak.EditProvider(provs[0].PK, func(p *authentiktest.Provider) { tt.provider(p, cert) })
			}
			h.approve(r.ID, workflow.GateCloudflare)
			done := h.feed.waitState(t, r.ID, workflow.StateSucceeded, workflow.StateFailed)
			if done.State != workflow.StateFailed {
				t.Fatalf("run %s; want verify to fail on %s", done.State, tt.name)
			}
			if s := done.Step(workflow.StepVerify); s.Status != workflow.StepFailed {
				t.Errorf("verify step %s, want failed (run error %q)", s.Status, done.Error)
			}
			if !strings.Contains(done.Error, tt.want) {
				t.Errorf("run error %q lacks %q", done.Error, tt.want)
			}
		})
	}
}
