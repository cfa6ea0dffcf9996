package workflow_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"github.com/ssobot/ssobot/workflow"
	"github.com/ssobot/ssobot/workflow/authentik/authentiktest"
	"github.com/ssobot/ssobot/workflow/cloudflare/cloudflaretest"
)

// stepDone is a feed predicate: the step has succeeded or failed.
func stepDone(name workflow.StepName) func(*workflow.Run) bool {
	return func(r *workflow.Run) bool {
		s := r.Step(name)
		return s.Status == workflow.StepSucceeded || s.Status == workflow.StepFailed || r.State.Terminal()
	}
}

// TestApplicationLookupAdoptsOnlyOurs: on a second attempt the application
// step looks for what the first may have made; an application with the slug
// bound to another provider (made by someone in between) is not adopted:
// the step fails for good and nothing is bound to the run's provider.
func TestApplicationLookupAdoptsOnlyOurs(t *testing.T) {
	h := newHarness(t)
	// The first attempt's create is refused, so the second looks the slug up.
	h.ak.AddFault(authentiktest.Fault{Method: "POST", PathContains: "/core/applications/", Kind: authentiktest.FaultStatus, Status: 503, Times: 1})
	ak := mustAuthentik(t, h, h.ak.Token())
	other, err := ak.CreateProvider(context.Background(), workflow.ProviderSpec{
		Name: "Provider for Other", ClientID: "someone-else", ClientType: "confidential",
		AuthorizationFlow: h.ak.FlowPK(authentiktest.FlowExplicitConsent), InvalidationFlow: h.ak.FlowPK(authentiktest.FlowInvalidation),
		RedirectURIs: []workflow.RedirectURI{{MatchingMode: "strict", URL: "https://other.example.com/callback"}},
		SigningKey:   h.ak.CertificatePK(authentiktest.SelfSignedCert), IncludeClaimsInIDToken: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	h.start(func(c *workflow.Config) {
		// After the first attempt's failure is stored, before the second.
		c.CrashHook = func(p workflow.CrashPoint, s workflow.StepName) bool {
			if p == workflow.CrashAfterResult && s == workflow.StepAuthentikApplication {
				once.Do(func() {
					h.ak.AddApplication(authentiktest.Application{Name: "Someone's Grafana", Slug: "grafana", Provider: other.PK})
				})
			}
			return false
		}
	})
	r := h.newRun(workflow.Request{ApplicationName: "Grafana"})
	h.approve(r.ID, workflow.GateAuthentik)
	done := h.feed.wait(t, r.ID, "the application step done", stepDone(workflow.StepAuthentikApplication))
	s := done.Step(workflow.StepAuthentikApplication)
	if done.State != workflow.StateFailed || s.Status != workflow.StepFailed || s.Attempts != 2 {
		t.Fatalf("run %s, application step %s after %d attempts; want it failed on its second", done.State, s.Status, s.Attempts)
	}
	if !strings.Contains(done.Error, `the slug "grafana" is taken by another application`) {
		t.Errorf("run error %q; want it to say the slug is taken", done.Error)
	}
	if done.Resources.AuthentikApplicationSlug != "" {
		t.Errorf("the run recorded application %q as its own", done.Resources.AuthentikApplicationSlug)
	}
	for _, a := range h.ak.Applications() {
		if a.Provider != other.PK {
			t.Errorf("application %q is bound to provider %d, want only the other's %d", a.Slug, a.Provider, other.PK)
		}
	}
	if n := len(h.ak.Applications()); n != 1 {
		t.Errorf("%d applications, want only the other's", n)
	}
}

// TestLoginMethodLookupAdoptsOnlyOurs: a login method with the run's name
// that appeared after preflight is adopted only when it is an OIDC one for
// the run's client; any other fails the step for good, and none is created.
func TestLoginMethodLookupAdoptsOnlyOurs(t *testing.T) {
	tests := []struct {
		name  string
		other func(clientID string) cloudflaretest.IdentityProvider
	}{
		{"another client", func(string) cloudflaretest.IdentityProvider {
			return cloudflaretest.IdentityProvider{Type: "oidc", Config: cloudflaretest.Config{
				ClientID: "someone-else", ClientSecret: "x", AuthURL: "https://idp.example.com/auth", TokenURL: "https://idp.example.com/token", CertsURL: "https://idp.example.com/certs"}}
		}},
		// Same client_id, but not an OIDC login method. The Access port
		// promises a Config for "oidc" only, and the Cloudflare adapter
		// keeps it, so there the type check cannot be seen; this case
		// guards against an Access that reads every config
		// (configReadingAccess) and may be dropped with the check.
		{"another type", func(clientID string) cloudflaretest.IdentityProvider {
			return cloudflaretest.IdentityProvider{Type: "google", Config: cloudflaretest.Config{ClientID: clientID, ClientSecret: "x"}}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.start(func(c *workflow.Config) { c.Access = configReadingAccess{Access: c.Access, cf: h.cf} })
			r := h.newRun(workflow.Request{ApplicationName: "Grafana"})
			h.approve(r.ID, workflow.GateAuthentik)
			h.feed.waitGate(t, r.ID, workflow.GateCloudflare)
			planned, err := h.engine.Get(context.Background(), r.ID)
			if err != nil {
				t.Fatal(err)
			}
			m := tt.other(planned.Params.ClientID)
			m.Name = planned.Params.LoginMethodName
			h.cf.AddIdentityProvider(m)
			h.approve(r.ID, workflow.GateCloudflare)
			done := h.feed.wait(t, r.ID, "the login method step done", stepDone(workflow.StepCloudflareLoginMethod))
			if s := done.Step(workflow.StepCloudflareLoginMethod); done.State != workflow.StateFailed || s.Status != workflow.StepFailed {
				t.Fatalf("run %s, login method step %s; want it failed", done.State, s.Status)
			}
			if want := `a login method named "` + m.Name + `" now exists for another client`; !strings.Contains(done.Error, want) {
				t.Errorf("run error %q lacks %q", done.Error, want)
			}
			if done.Resources.CloudflareIdentityProviderID != "" {
				t.Errorf("the run recorded login method %s as its own", done.Resources.CloudflareIdentityProviderID)
			}
			if n, calls := len(h.cf.IdentityProviders()), h.cf.Calls("POST", "/identity_providers"); n != 1 || calls != 0 {
				t.Errorf("%d login methods after %d creates; want only the other one, none created", n, calls)
			}
		})
	}
}

// configReadingAccess lists login methods with the client_id of every
// type, as an Access that decodes every config would (a Google login method
// has a client_id too), against the port's promise of a Config for "oidc"
// only; the Cloudflare adapter decodes OIDC configs only.
type configReadingAccess struct {
	workflow.Access
	cf *cloudflaretest.Server
}

func (a configReadingAccess) ListIdentityProviders(ctx context.Context) ([]workflow.IdentityProvider, error) {
	idps, err := a.Access.ListIdentityProviders(ctx)
	stored := a.cf.IdentityProviders()
	for i := range idps {
		for _, s := range stored {
			if s.ID == idps[i].ID && idps[i].Config.ClientID == "" {
				idps[i].Config.ClientID = s.Config.ClientID
			}
		}
	}
	return idps, err
}

// TestEmptyClientSecretCreatesNoLoginMethod: a provider whose client secret
// reads back empty fails the login method step before Cloudflare is called.
func TestEmptyClientSecretCreatesNoLoginMethod(t *testing.T) {
	h := newHarness(t)
	h.start(nil)
	r := h.newRun(workflow.Request{})
	h.approve(r.ID, workflow.GateAuthentik)
	h.feed.waitGate(t, r.ID, workflow.GateCloudflare)
	provs := h.ak.Providers()
	if len(provs) != 1 {
		t.Fatalf("%d providers, want 1", len(provs))
	}
	h.ak.EditProvider(provs[0].PK, func(p *authentiktest.Provider) { p.ClientSecret = "" })
	h.approve(r.ID, workflow.GateCloudflare)
	done := h.feed.wait(t, r.ID, "the login method step done", stepDone(workflow.StepCloudflareLoginMethod))
	if s := done.Step(workflow.StepCloudflareLoginMethod); done.State != workflow.StateFailed || s.Status != workflow.StepFailed {
		t.Fatalf("run %s, login method step %s; want it failed", done.State, s.Status)
	}
	if !strings.Contains(done.Error, "has no client secret") {
		t.Errorf("run error %q; want it to say the provider has no client secret", done.Error)
	}
	if n, calls := len(h.cf.IdentityProviders()), h.cf.Calls("POST", "/identity_providers"); n != 0 || calls != 0 {
		t.Errorf("%d login methods after %d creates; want none, not even tried", n, calls)
	}
}

// TestLoginMethodAdoptsOursListedAfterAnother: Cloudflare names are not
// unique, so the login method an earlier attempt made may be listed after
// another's with the same name. The step looks at every one with the name
// and adopts the run's own instead of refusing on the first.
func TestLoginMethodAdoptsOursListedAfterAnother(t *testing.T) {
	h := newHarness(t)
	// Listed before anything the run makes; renamed to the run's name once
	// the run's own exists.
	h.cf.AddIdentityProvider(cloudflaretest.IdentityProvider{Name: "not yet", Type: "oidc", Config: cloudflaretest.Config{
		ClientID: "someone-else", ClientSecret: "x", AuthURL: "https://idp.example.com/auth", TokenURL: "https://idp.example.com/token", CertsURL: "https://idp.example.com/certs"}})
	stranger := h.cf.IdentityProviders()[0].ID
	// The first attempt's create is made, but its answer is lost.
	h.cf.AddFault(cloudflaretest.Fault{Method: "POST", PathContains: "/identity_providers", Kind: cloudflaretest.FaultApplyThenReset, Times: 1})
	var once sync.Once
	var name string
	h.start(func(c *workflow.Config) {
		c.CrashHook = func(p workflow.CrashPoint, s workflow.StepName) bool {
			if p == workflow.CrashAfterResult && s == workflow.StepCloudflareLoginMethod {
				once.Do(func() {
					h.cf.EditIdentityProvider(stranger, func(m *cloudflaretest.IdentityProvider) { m.Name = name })
				})
			}
			return false
		}
	})
	r := h.newRun(workflow.Request{ApplicationName: "Grafana"})
	name = r.Params.LoginMethodName
	done := h.complete(r.ID)
	s := done.Step(workflow.StepCloudflareLoginMethod)
	if done.State != workflow.StateSucceeded || s.Attempts != 2 {
		t.Fatalf("run %s after %d login method attempts (%s); want it succeeded on the second", done.State, s.Attempts, done.LastError())
	}
	idps := h.cf.IdentityProviders()
	if len(idps) != 2 || idps[0].ID != stranger || idps[0].Name != name || idps[1].Name != name {
		t.Fatalf("login methods %+v; want the other's, then the run's, both named %q", idps, name)
	}
	if got := done.Resources.CloudflareIdentityProviderID; got != idps[1].ID || idps[1].Config.ClientID != done.Params.ClientID {
		t.Errorf("the run recorded login method %s; want its own %s", got, idps[1].ID)
	}
	if n := h.cf.Calls("POST", "/identity_providers"); n != 1 {
		t.Errorf("%d creates; want the first attempt's only", n)
	}
}

// TestUnreadableLoginMethods: a login method whose config the adapter
// cannot decode fails nothing when it has another name; with the run's
// name it may be the run's own, so the step fails for good, naming it,
// without retrying and without creating a second one.
func TestUnreadableLoginMethods(t *testing.T) {
	unreadable := json.RawMessage(`{"client_id":"someone-else","scopes":"openid email"}`)
	tests := []struct {
		name      string
		runsName  bool
		wantState workflow.State
	}{
		{"another name", false, workflow.StateSucceeded},
		{"the run's name", true, workflow.StateFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.start(nil)
			r := h.newRun(workflow.Request{ApplicationName: "Grafana"})
			h.approve(r.ID, workflow.GateAuthentik)
			h.feed.waitGate(t, r.ID, workflow.GateCloudflare)
			m := cloudflaretest.IdentityProvider{Name: "Someone's SSO", Type: "oidc", RawConfig: unreadable}
			if tt.runsName {
				m.Name = r.Params.LoginMethodName
			}
			h.cf.AddIdentityProvider(m)
			id := h.cf.IdentityProviders()[0].ID
			h.approve(r.ID, workflow.GateCloudflare)
			done := h.feed.waitState(t, r.ID, workflow.StateSucceeded, workflow.StateFailed)
			s := done.Step(workflow.StepCloudflareLoginMethod)
			if done.State != tt.wantState || s.Attempts != 1 {
				t.Fatalf("run %s after %d login method attempts (%s); want %s after one", done.State, s.Attempts, done.LastError(), tt.wantState)
			}
			creates := h.cf.Calls("POST", "/identity_providers")
			if !tt.runsName {
				if creates != 1 {
					t.Errorf("%d creates, want 1", creates)
				}
				return
			}
			for _, want := range []string{`named "` + m.Name + `"`, id, "cannot be read by ssobot", "unexpected JSON string for scopes"} {
				if !strings.Contains(done.Error, want) {
					t.Errorf("run error %q lacks %q", done.Error, want)
				}
			}
			if creates != 0 || done.Resources.CloudflareIdentityProviderID != "" {
				t.Errorf("%d creates, recorded login method %q; want none", creates, done.Resources.CloudflareIdentityProviderID)
			}
		})
	}
}
