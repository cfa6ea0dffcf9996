package workflow_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ssobot/ssobot/workflow"
	"github.com/ssobot/ssobot/workflow/authentik/authentiktest"
	"github.com/ssobot/ssobot/workflow/cloudflare/cloudflaretest"
)

func TestRunSucceeds(t *testing.T) {
	h := newHarness(t)
	h.start(nil)
	r := h.newRun(workflow.Request{ApplicationName: "Grafana"})
	if r.ID == 0 || r.State != workflow.StatePending {
		t.Fatalf("started run = %d %s", r.ID, r.State)
	}
	g := h.feed.waitGate(t, r.ID, workflow.GateAuthentik)
	planned := h.feed.latest[r.ID]
	// Every parameter is resolved and shown before the first approval.
	if p := planned.Params; p.TeamDomain != "company.cloudflareaccess.com" || p.CallbackURL != "https://company.cloudflareaccess.com/cdn-cgi/access/callback" ||
		p.AuthorizationFlowID == "" || p.InvalidationFlowID == "" || p.SigningKeyID == "" || len(p.ScopeMappingIDs) != 3 || p.ClientID == "" {
		t.Fatalf("plan not resolved before the gate: %+v", p)
	}
	if g.Required != 1 || g.Nonce == "" || !g.Deadline.Equal(h.clock.Now().Add(24*time.Hour)) {
		t.Errorf("gate = %+v", g)
	}
	if len(h.ak.Providers())+len(h.ak.Applications())+len(h.cf.IdentityProviders()) != 0 {
		t.Fatal("something was created before approval")
	}
	done := h.complete(r.ID)
	if done.State != workflow.StateSucceeded {
		t.Fatalf("run ended %s: %s", done.State, done.LastError())
	}
	h.assertOneOfEach(done)

	prov := h.ak.Providers()[0]
	if prov.Name != "Provider for Grafana" || prov.ClientType != "confidential" || prov.SigningKey == "" ||
		len(prov.PropertyMappings) != 3 || !prov.IncludeClaimsInIDToken || prov.EncryptionKey != "" {
		t.Errorf("provider = %+v", prov)
	}
	if len(prov.RedirectURIs) != 1 || prov.RedirectURIs[0].URL != done.Params.CallbackURL || prov.RedirectURIs[0].MatchingMode != "strict" {
		t.Errorf("redirect URIs = %+v", prov.RedirectURIs)
	}
	app := h.ak.Applications()[0]
	if app.Name != "Grafana" || app.Slug != "grafana" || app.Provider != prov.PK || app.PolicyEngineMode != "any" {
		t.Errorf("application = %+v", app)
	}
	idp := h.cf.IdentityProviders()[0]
	base := h.ak.URL()
	want := map[string]string{
		"name": "authentik (Grafana)", "type": "oidc", "client_id": prov.ClientID, "client_secret": prov.ClientSecret,
		"auth_url": base + "/application/o/authorize/", "token_url": base + "/application/o/token/",
		"certs_url": base + "/application/o/grafana/jwks/", "email_claim_name": "email",
	}
	got := map[string]string{
		"name": idp.Name, "type": idp.Type, "client_id": idp.Config.ClientID, "client_secret": idp.Config.ClientSecret,
		"auth_url": idp.Config.AuthURL, "token_url": idp.Config.TokenURL, "certs_url": idp.Config.CertsURL, "email_claim_name": idp.Config.EmailClaimName,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("login method %s = %q, want %q", k, got[k], v)
		}
	}
	if !idp.Config.PKCEEnabled || strings.Join(idp.Config.Scopes, " ") != "openid email profile" {
		t.Errorf("login method pkce %v scopes %v", idp.Config.PKCEEnabled, idp.Config.Scopes)
	}
	if want := "https://one.dash.cloudflare.com/" + accountID + "/settings/authentication"; done.DashboardURL != want {
		t.Errorf("dashboard = %q", done.DashboardURL)
	}
	for _, s := range done.Steps {
		if s.Status != workflow.StepSucceeded {
			t.Errorf("step %s is %s", s.Name, s.Status)
		}
	}
	events, err := h.engine.Events(context.Background(), r.ID)
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, ev := range events {
		types = append(types, string(ev.Type))
	}
	for _, want := range []workflow.EventType{workflow.EventCreated, workflow.EventPlanned, workflow.EventGateOpened, workflow.EventDecisionAccepted,
		workflow.EventGateApproved, workflow.EventResourceCreated, workflow.EventStepSucceeded, workflow.EventSucceeded} {
		if !strings.Contains(strings.Join(types, " "), string(want)) {
			t.Errorf("event log lacks %s: %v", want, types)
		}
	}
	if len(h.ak.Validating()) == 2 && (h.ak.Calls("POST", "/providers/oauth2/") != 1 || h.cf.Calls("POST", "/identity_providers") != 1) {
		t.Error("the creates were not seen (and so not validated) by the fakes")
	}
}

// TestCrashAtEveryPoint stops the engine between the intent and the result
// of every step, reopens the same database with a fresh engine, and checks
// that each object exists exactly once.
func TestCrashAtEveryPoint(t *testing.T) {
	steps := []workflow.StepName{workflow.StepPreflight, workflow.StepAuthentikProvider, workflow.StepAuthentikApplication,
		workflow.StepCloudflareLoginMethod, workflow.StepVerify}
	for _, step := range steps {
		for _, point := range workflow.CrashPoints {
			ok := t.Run(string(step)+"/"+string(point), func(t *testing.T) {
				h := newHarness(t)
				crashed := make(chan struct{})
				var once sync.Once
				h.start(func(c *workflow.Config) {
					c.CrashHook = func(p workflow.CrashPoint, s workflow.StepName) bool {
						hit := false
						if p == point && s == step {
							once.Do(func() { hit = true; close(crashed) })
						}
						return hit
					}
				})
				r := h.newRun(workflow.Request{})
				// Approve gates until the crash happens.
				engine, feed := h.engine, h.feed
				approverDone := make(chan struct{})
				go func() {
					defer close(approverDone)
					for _, gate := range []workflow.StepName{workflow.GateAuthentik, workflow.GateCloudflare} {
						for {
							cur, err := engine.Get(context.Background(), r.ID)
							if err != nil {
								return
							}
							if g := cur.OpenGate(); g != nil && g.Name == gate {
								_, _ = engine.Decide(context.Background(), workflow.DecisionRequest{RunID: r.ID, Gate: gate, Nonce: g.Nonce, User: approver, Decision: workflow.Approve})
								break
							}
							feed.mu.Lock()
							ch := feed.changed
							feed.mu.Unlock()
							select {
							case <-ch:
							case <-crashed:
								return
							}
						}
					}
				}()
				select {
				case <-crashed:
				case <-time.After(20 * time.Second):
					t.Fatal("crash point never reached")
				}
				<-approverDone
				h.stop()

				// A fresh engine on the same file finishes the run.
				h.feed = newFeed()
				h.start(nil)
				cur, err := h.engine.Get(context.Background(), r.ID)
				if err != nil {
					t.Fatal(err)
				}
				h.feed.RunChanged(context.Background(), cur, nil)
				for _, gate := range []workflow.StepName{workflow.GateAuthentik, workflow.GateCloudflare} {
					if s := cur.Step(gate); s.Status != workflow.StepSucceeded {
						h.approve(r.ID, gate)
					}
				}
				done := h.feed.waitState(t, r.ID, workflow.StateSucceeded, workflow.StateFailed)
				if done.State != workflow.StateSucceeded {
					t.Fatalf("run ended %s: %s", done.State, done.LastError())
				}
				h.assertOneOfEach(done)
			})
			if !ok {
				// The other points would most likely fail alike, each after
				// the feed's 20 s wait: stop at the first.
				return
			}
		}
	}
}

func TestConcurrentDecisionsOneWins(t *testing.T) {
	h := newHarness(t)
	h.appr.all = true
	h.start(nil)
	r := h.newRun(workflow.Request{})
	g := h.feed.waitGate(t, r.ID, workflow.GateAuthentik)

	const n = 100
	var wins atomic.Int32
	var winner atomic.Value
	errs := make(chan error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			user := fmt.Sprintf("U%03d", i)
			_, err := h.engine.Decide(context.Background(), workflow.DecisionRequest{RunID: r.ID, Gate: g.Name, Nonce: g.Nonce, User: user, Decision: workflow.Approve})
			if err == nil {
				wins.Add(1)
				winner.Store(user)
				return
			}
			errs <- err
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	if wins.Load() != 1 {
		t.Fatalf("%d decisions won, want exactly 1", wins.Load())
	}
	for err := range errs {
		var ref *workflow.RefusedError
		if !errors.As(err, &ref) || ref.DecidedBy != winner.Load() || !strings.Contains(err.Error(), winner.Load().(string)) {
			t.Fatalf("loser got %v, want a refusal naming %v", err, winner.Load())
		}
	}
	events, _ := h.engine.Events(context.Background(), r.ID)
	refusedCount := 0
	for _, ev := range events {
		if ev.Type == workflow.EventDecisionRefused {
			refusedCount++
		}
	}
	if refusedCount != n-1 {
		t.Errorf("%d refused decisions in the audit log, want %d", refusedCount, n-1)
	}
}

func TestDecisionRefusals(t *testing.T) {
	h := newHarness(t)
	h.start(nil)
	r := h.newRun(workflow.Request{})
	g := h.feed.waitGate(t, r.ID, workflow.GateAuthentik)
	ctx := context.Background()
	if _, err := h.engine.SetMessageRef(ctx, r.ID, "C1|123.000"); err != nil {
		t.Fatal(err)
	}
	decide := func(user, nonce string, gate workflow.StepName, d workflow.Decision) error {
		_, err := h.engine.Decide(ctx, workflow.DecisionRequest{RunID: r.ID, Gate: gate, Nonce: nonce, User: user, Decision: d})
		return err
	}
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"requester approves own run", decide(requester, g.Nonce, g.Name, workflow.Approve), "another approver"},
		{"requester rejects own run", decide(requester, g.Nonce, g.Name, workflow.Reject), "another approver"},
		{"non-approver", decide("U_STRANGER", g.Nonce, g.Name, workflow.Approve), "not an approver"},
		{"stale nonce", decide(approver, "old-nonce", g.Name, workflow.Approve), "older message"},
		{"another run's message", func() error {
			_, err := h.engine.Decide(ctx, workflow.DecisionRequest{RunID: r.ID, Gate: g.Name, Nonce: g.Nonce, User: approver, Decision: workflow.Approve, MessageRef: "C1|999.000"})
			return err
		}(), "does not belong to run"},
		{"gate not open", decide(approver, g.Nonce, workflow.GateCloudflare, workflow.Approve), "not open"},
		{"unknown gate", decide(approver, g.Nonce, "deploy", workflow.Approve), "no such gate"},
	}
	for _, tt := range tests {
		if !isRefused(tt.err) || !strings.Contains(tt.err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want refusal containing %q", tt.name, tt.err, tt.want)
		}
		// The bot words these itself, with the command to type.
		var ref *workflow.RefusedError
		if errors.As(tt.err, &ref) && (ref.Kind == workflow.RefusedOwnRun) != strings.HasPrefix(tt.name, "requester") {
			t.Errorf("%s: kind %q", tt.name, ref.Kind)
		}
	}
	if err := decide(approver, g.Nonce, g.Name, workflow.Approve); err != nil {
		t.Fatal(err)
	}
	if err := decide(approver, g.Nonce, g.Name, workflow.Approve); !isRefused(err) || !strings.Contains(err.Error(), "already approved by "+approver) {
		t.Errorf("second click: %v", err)
	}
	if _, err := h.engine.Decide(ctx, workflow.DecisionRequest{RunID: 999, Gate: g.Name, User: approver, Decision: workflow.Approve}); !errors.Is(err, workflow.ErrNotFound) {
		t.Errorf("unknown run: %v", err)
	}
	events, _ := h.engine.Events(ctx, r.ID)
	refused := 0
	for _, ev := range events {
		if ev.Type == workflow.EventDecisionRefused {
			refused++
			if ev.Actor == "" {
				t.Errorf("refusal without actor: %+v", ev)
			}
		}
	}
	if refused != len(tests)+1 {
		t.Errorf("%d refusals in the audit log, want %d", refused, len(tests)+1)
	}
}

func TestSelfApprovalAllowedWhenConfigured(t *testing.T) {
	h := newHarness(t)
	h.start(func(c *workflow.Config) { c.AllowSelfApproval = true; c.ApprovalsRequired = 2 })
	h.appr.all = true
	r := h.newRun(workflow.Request{})
	g := h.feed.waitGate(t, r.ID, workflow.GateAuthentik)
	for i, user := range []string{requester, approver} {
		got, err := h.engine.Decide(context.Background(), workflow.DecisionRequest{RunID: r.ID, Gate: g.Name, Nonce: g.Nonce, User: user, Decision: workflow.Approve})
		if err != nil {
			t.Fatal(err)
		}
		if wantOpen := i == 0; (got.State == workflow.StateAwaitingApproval) != wantOpen {
			t.Errorf("after %d approvals state = %s", i+1, got.State)
		}
	}
}

func TestRejectEndsRun(t *testing.T) {
	h := newHarness(t)
	h.start(nil)
	r := h.newRun(workflow.Request{})
	g := h.feed.waitGate(t, r.ID, workflow.GateAuthentik)
	got, err := h.engine.Decide(context.Background(), workflow.DecisionRequest{RunID: r.ID, Gate: g.Name, Nonce: g.Nonce, User: approver, Decision: workflow.Reject, Reason: "wrong team"})
	if err != nil {
		t.Fatal(err)
	}
	if got.State != workflow.StateRejected || !strings.Contains(got.Error, "wrong team") {
		t.Fatalf("state %s error %q", got.State, got.Error)
	}
	if len(h.ak.Providers()) != 0 {
		t.Error("a rejected run created a provider")
	}
}

func TestGateExpires(t *testing.T) {
	h := newHarness(t)
	h.start(nil)
	r := h.newRun(workflow.Request{})
	g := h.feed.waitGate(t, r.ID, workflow.GateAuthentik)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.clock.WaitForTimer(ctx, 24*time.Hour); err != nil {
		t.Fatal("no deadline timer armed")
	}
	h.clock.Advance(24 * time.Hour)
	got := h.feed.waitState(t, r.ID, workflow.StateExpired)
	if s := got.Step(g.Name); s.Status != workflow.StepExpired || !strings.Contains(got.Error, "expired") {
		t.Errorf("gate %+v, error %q", s, got.Error)
	}
	if _, err := h.engine.Decide(context.Background(), workflow.DecisionRequest{RunID: r.ID, Gate: g.Name, Nonce: g.Nonce, User: approver, Decision: workflow.Approve}); !isRefused(err) {
		t.Errorf("decision after expiry: %v", err)
	}
}

// TestGateDeadlineSurvivesRestart: a gate keeps its persisted deadline
// across a restart, and expires on time under the new engine.
func TestGateDeadlineSurvivesRestart(t *testing.T) {
	h := newHarness(t)
	h.start(nil)
	r := h.newRun(workflow.Request{})
	g := h.feed.waitGate(t, r.ID, workflow.GateAuthentik)
	h.restart(nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.clock.WaitForTimer(ctx, 24*time.Hour); err != nil {
		t.Fatal("restarted engine armed no deadline")
	}
	h.clock.Advance(g.Deadline.Sub(h.clock.Now()))
	h.feed.waitState(t, r.ID, workflow.StateExpired)
}

func TestPreflightProblems(t *testing.T) {
	tests := []struct {
		name  string
		setup func(h *harness)
		req   workflow.Request
		want  string
	}{
		{"bad authentik token", func(h *harness) {}, workflow.Request{}, "authentik token was refused"},
		{"missing authorization flow", func(h *harness) { h.ak.DeleteFlow("default-provider-authorization-explicit-consent") }, workflow.Request{}, "no authorization flow with slug"},
		{"missing invalidation flow", func(h *harness) { h.ak.DeleteFlow("default-provider-invalidation-flow") }, workflow.Request{}, "no invalidation flow"},
		{"missing signing key", func(h *harness) { h.ak.DeleteCertificate("authentik Self-signed Certificate") }, workflow.Request{}, `no certificate named "authentik Self-signed Certificate"`},
		{"missing email scope", func(h *harness) { h.ak.DeleteScopeMapping(workflow.ScopeEmail) }, workflow.Request{}, "scope-email is missing"},
		{"no view_flow", func(h *harness) { h.ak.DenyPermission("view_flow") }, workflow.Request{}, "lacks permission view_flow"},
		{"cloudflare token denied", func(h *harness) { h.cf.DenyToken() }, workflow.Request{}, "Identity Providers, and Groups Write"},
		{"login method name taken", func(h *harness) {
			h.cf.AddIdentityProvider(cloudflaretest.IdentityProvider{Name: "authentik (Grafana)", Type: "oidc", Config: cloudflaretest.Config{ClientID: "someone-else"}})
		}, workflow.Request{}, `login method named "authentik (Grafana)" already exists`},
		// Its config cannot be read, so it may be the run's own: never taken for absent.
		{"login method name taken by one that cannot be read", func(h *harness) {
			h.cf.AddIdentityProvider(cloudflaretest.IdentityProvider{Name: "authentik (Grafana)", Type: "oidc", RawConfig: json.RawMessage(`{"client_id":7}`)})
		}, workflow.Request{}, `(type oidc: its config could not be decoded: unexpected JSON number for client_id), cannot be read by ssobot`},
		{"slug taken", func(h *harness) { h.ak.AddApplication(authentiktest.Application{Name: "Other", Slug: "grafana"}) }, workflow.Request{}, `slug "grafana" already exists`},
		{"untrusted certificate", func(h *harness) {}, workflow.Request{}, "publicly trusted certificate"},
		// Cloudflare sends logins back to the account's team domain only.
		{"another team domain", func(h *harness) {}, workflow.Request{TeamDomain: "compnay"}, "team domain compnay.cloudflareaccess.com is not this Cloudflare account's (company.cloudflareaccess.com)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			tt.setup(h)
			h.start(func(c *workflow.Config) {
				switch tt.name {
				case "bad authentik token":
					c.Authentik = mustAuthentik(t, h, "wrong-token")
				case "untrusted certificate":
					c.Endpoints = untrustingEndpoints()
				}
			})
			r := h.newRun(tt.req)
			done := h.feed.waitState(t, r.ID, workflow.StateFailed, workflow.StateAwaitingApproval)
			if done.State != workflow.StateFailed {
				t.Fatalf("state %s, want failed", done.State)
			}
			if !strings.Contains(strings.Join(done.Problems, "\n"), tt.want) {
				t.Errorf("problems %q lack %q", done.Problems, tt.want)
			}
			if len(h.ak.Providers()) != 0 || len(h.cf.IdentityProviders()) > 1 {
				t.Error("a failed preflight created something")
			}
		})
	}
}

func TestPreflightListsEveryProblem(t *testing.T) {
	h := newHarness(t)
	h.ak.DeleteCertificate("authentik Self-signed Certificate")
	h.ak.DeleteScopeMapping(workflow.ScopeProfile)
	h.cf.AddIdentityProvider(cloudflaretest.IdentityProvider{Name: "authentik (Grafana)", Type: "oidc", Config: cloudflaretest.Config{ClientID: "x"}})
	h.start(nil)
	r := h.newRun(workflow.Request{})
	done := h.feed.waitState(t, r.ID, workflow.StateFailed)
	if len(done.Problems) != 3 {
		t.Errorf("problems = %q, want 3", done.Problems)
	}
}

func TestTransientFaultsStillFinish(t *testing.T) {
	kinds := []struct {
		name string
		ak   authentiktest.Fault
		cf   cloudflaretest.Fault
	}{
		{"429 with Retry-After", authentiktest.Fault{Kind: authentiktest.FaultStatus, Status: 429, RetryAfter: "7", Times: 3},
			cloudflaretest.Fault{Kind: cloudflaretest.FaultStatus, Status: 429, RetryAfter: "300", Times: 2}},
		{"429 without Retry-After", authentiktest.Fault{Kind: authentiktest.FaultStatus, Status: 429, Times: 3},
			cloudflaretest.Fault{Kind: cloudflaretest.FaultStatus, Status: 429, Times: 2}},
		{"5xx", authentiktest.Fault{Kind: authentiktest.FaultStatus, Status: 503, Times: 4},
			cloudflaretest.Fault{Kind: cloudflaretest.FaultStatus, Status: 502, Times: 3}},
		{"connection reset", authentiktest.Fault{Kind: authentiktest.FaultReset, Times: 3},
			cloudflaretest.Fault{Kind: cloudflaretest.FaultReset, Times: 3}},
		{"response lost after create", authentiktest.Fault{Kind: authentiktest.FaultApplyThenReset, Method: "POST", Times: 2},
			cloudflaretest.Fault{Kind: cloudflaretest.FaultApplyThenReset, Method: "POST", Times: 1}},
		{"malformed JSON", authentiktest.Fault{Kind: authentiktest.FaultMalformed, Times: 3},
			cloudflaretest.Fault{Kind: cloudflaretest.FaultMalformed, Times: 2}},
		{"timeout", authentiktest.Fault{Kind: authentiktest.FaultTimeout, Times: 2},
			cloudflaretest.Fault{Kind: cloudflaretest.FaultTimeout, Times: 2}},
	}
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			h := newHarness(t)
			h.ak.AddFault(k.ak)
			h.cf.AddFault(k.cf)
			h.start(func(c *workflow.Config) { c.AttemptTimeout = 3 * time.Second })
			r := h.newRun(workflow.Request{})
			done := h.complete(r.ID)
			if done.State != workflow.StateSucceeded {
				t.Fatalf("run ended %s: %s", done.State, done.LastError())
			}
			h.assertOneOfEach(done)
			failed := 0
			for _, s := range done.Steps {
				failed += len(s.Errors)
			}
			if failed == 0 {
				t.Error("no attempt failed: the faults were not injected")
			}
			if k.cf.RetryAfter == "300" {
				// Backoff honoured Retry-After: the failed attempt's retry was at least 300 s later.
				events, _ := h.engine.Events(context.Background(), r.ID)
				if !hasRetryAfterAtLeast(events, 300*time.Second) {
					t.Error("no retry waited for Cloudflare's Retry-After")
				}
			}
		})
	}
}

func hasRetryAfterAtLeast(events []workflow.Event, d time.Duration) bool {
	for _, ev := range events {
		if ev.Type != workflow.EventAttemptFailed {
			continue
		}
		at, err := time.Parse(time.RFC3339, ev.Data["retry_at"])
		if err == nil && at.Sub(ev.At) >= d-time.Second {
			return true
		}
	}
	return false
}

func TestRandomFaults(t *testing.T) {
	h := newHarness(t)
	h.ak.SetFaultRate(0.3, 1, authentiktest.FaultStatus, authentiktest.FaultReset, authentiktest.FaultMalformed, authentiktest.FaultApplyThenReset)
	h.cf.SetFaultRate(0.3, 2, cloudflaretest.FaultStatus, cloudflaretest.FaultReset, cloudflaretest.FaultMalformed, cloudflaretest.FaultApplyThenReset)
	h.start(func(c *workflow.Config) { c.Retry.MaxAttempts = 200 })
	var ids []int64
	for i := range 3 {
		ids = append(ids, h.newRun(workflow.Request{ApplicationName: fmt.Sprintf("App %d", i), LoginMethodName: fmt.Sprintf("authentik %d", i)}).ID)
	}
	for _, id := range ids {
		done := h.complete(id)
		if done.State != workflow.StateSucceeded {
			t.Fatalf("run %d ended %s: %s", id, done.State, done.LastError())
		}
	}
	if p, a, i := len(h.ak.Providers()), len(h.ak.Applications()), len(h.cf.IdentityProviders()); p != 3 || a != 3 || i != 3 {
		t.Errorf("created %d providers, %d applications, %d login methods; want 3 each", p, a, i)
	}
}

func TestPermanentFailureThenRetry(t *testing.T) {
	h := newHarness(t)
	h.ak.AddFault(authentiktest.Fault{Method: "POST", PathContains: "/core/applications/", Kind: authentiktest.FaultStatus, Status: 400, Times: 1})
	h.start(nil)
	r := h.newRun(workflow.Request{})
	h.approve(r.ID, workflow.GateAuthentik)
	failed := h.feed.waitState(t, r.ID, workflow.StateFailed)
	if s := failed.Step(workflow.StepAuthentikApplication); s.Status != workflow.StepFailed || s.Attempts != 1 {
		t.Fatalf("application step = %+v", s)
	}
	if _, err := h.engine.Retry(context.Background(), r.ID, "U_STRANGER"); !isRefused(err) {
		t.Errorf("retry by a stranger: %v", err)
	}
	if _, err := h.engine.Retry(context.Background(), r.ID, requester); err != nil {
		t.Fatal(err)
	}
	h.approve(r.ID, workflow.GateCloudflare)
	done := h.feed.waitState(t, r.ID, workflow.StateSucceeded, workflow.StateFailed)
	if done.State != workflow.StateSucceeded {
		t.Fatalf("retried run ended %s: %s", done.State, done.LastError())
	}
	h.assertOneOfEach(done)
	if got := h.ak.Calls("POST", "/providers/oauth2/"); got != 1 {
		t.Errorf("provider created %d times, want once (not repeated on retry)", got)
	}
	if s := done.Step(workflow.StepAuthentikApplication); s.Attempts != 2 || len(s.Errors) != 1 {
		t.Errorf("application step history = %+v", s)
	}
}

func TestCancel(t *testing.T) {
	h := newHarness(t)
	h.start(nil)
	r := h.newRun(workflow.Request{})
	h.feed.waitGate(t, r.ID, workflow.GateAuthentik)
	if _, err := h.engine.Cancel(context.Background(), r.ID, "U_STRANGER", ""); !isRefused(err) {
		t.Errorf("cancel by a stranger: %v", err)
	}
	got, err := h.engine.Cancel(context.Background(), r.ID, requester, "not needed")
	if err != nil {
		t.Fatal(err)
	}
	if got.State != workflow.StateCancelled {
		t.Errorf("state %s", got.State)
	}
	if _, err := h.engine.Cancel(context.Background(), r.ID, requester, ""); !isRefused(err) {
		t.Errorf("second cancel: %v", err)
	}
}

func TestRunsResumeAfterRestart(t *testing.T) {
	h := newHarness(t)
	h.start(nil)
	a := h.newRun(workflow.Request{ApplicationName: "A", LoginMethodName: "a"})
	b := h.newRun(workflow.Request{ApplicationName: "B", LoginMethodName: "b"})
	h.approve(a.ID, workflow.GateAuthentik)
	h.feed.waitGate(t, a.ID, workflow.GateCloudflare)
	h.feed.waitGate(t, b.ID, workflow.GateAuthentik)
	h.stop()
	h.feed = newFeed()
	h.start(nil)
	for _, id := range []int64{a.ID, b.ID} {
		cur, _ := h.engine.Get(context.Background(), id)
		h.feed.RunChanged(context.Background(), cur, nil)
	}
	h.approve(b.ID, workflow.GateAuthentik)
	h.approve(a.ID, workflow.GateCloudflare)
	h.approve(b.ID, workflow.GateCloudflare)
	for _, id := range []int64{a.ID, b.ID} {
		if done := h.feed.waitState(t, id, workflow.StateSucceeded, workflow.StateFailed); done.State != workflow.StateSucceeded {
			t.Errorf("run %d ended %s: %s", id, done.State, done.LastError())
		}
	}
}

// TestSecretNeverStored searches the database file, the audit log, errors
// and the logs for the client secret and the tokens after runs that
// succeed and fail.
func TestSecretNeverStored(t *testing.T) {
	h := newHarness(t)
	h.cf.AddFault(cloudflaretest.Fault{Method: "POST", Kind: cloudflaretest.FaultStatus, Status: 400, Times: 1})
	h.start(nil)
	r := h.newRun(workflow.Request{})
	h.approve(r.ID, workflow.GateAuthentik)
	h.approve(r.ID, workflow.GateCloudflare)
	h.feed.waitState(t, r.ID, workflow.StateFailed)
	if _, err := h.engine.Retry(context.Background(), r.ID, requester); err != nil {
		t.Fatal(err)
	}
	done := h.feed.waitState(t, r.ID, workflow.StateSucceeded, workflow.StateFailed)
	if done.State != workflow.StateSucceeded {
		t.Fatalf("state %s: %s", done.State, done.LastError())
	}
	events, _ := h.engine.Events(context.Background(), r.ID)
	h.stop()
	db, err := os.ReadFile(h.dbPath)
	if err != nil {
		t.Fatal(err)
	}
	secret := h.ak.Providers()[0].ClientSecret
	if secret == "" || h.cf.IdentityProviders()[0].Config.ClientSecret != secret {
		t.Fatal("the login method did not get the provider's secret")
	}
	var errs []string
	for _, s := range done.Steps {
		for _, e := range s.Errors {
			errs = append(errs, e.Error)
		}
	}
	haystacks := map[string]string{
		"database file": string(db), "events": fmt.Sprint(events), "step errors": strings.Join(errs, "\n"), "logs": h.logs.String(),
	}
	for name, hay := range haystacks {
		for what, needle := range map[string]string{"client secret": secret, "authentik token": h.ak.Token(), "cloudflare token": h.cf.Token()} {
			if strings.Contains(hay, needle) {
				t.Errorf("the %s appears in the %s", what, name)
			}
		}
	}
}

// TestRateLimitBlockNoRetryStorm: past Cloudflare's rate limit every call is
// refused for five minutes; runs wait out the Retry-After instead of
// hammering the blocked token.
func TestRateLimitBlockNoRetryStorm(t *testing.T) {
	h := newHarness(t)
	h.cf.SetRateLimit(6, 5*time.Minute, h.clock.Now)
	h.start(func(c *workflow.Config) { c.Retry.MaxAttempts = 30 })
	begin := h.clock.Now()
	const runs = 5
	var ids []int64
	for i := range runs {
		ids = append(ids, h.newRun(workflow.Request{ApplicationName: fmt.Sprintf("App %d", i), LoginMethodName: fmt.Sprintf("authentik %d", i)}).ID)
	}
	for _, id := range ids {
		if done := h.complete(id); done.State != workflow.StateSucceeded {
			t.Fatalf("run %d ended %s: %s", id, done.State, done.LastError())
		}
	}
	// A correct run needs 5 Cloudflare calls: organization and list in
	// preflight, list and create for the login method, get in verify.
	const minimum = runs * 5
	total := h.cf.Calls("", "")
	blocks := int(h.clock.Now().Sub(begin)/(5*time.Minute)) + 1
	t.Logf("%d Cloudflare calls for %d runs (minimum %d) over %d block periods", total, runs, minimum, blocks)
	if total <= minimum {
		t.Fatal("the rate limit never blocked a call: the test proves nothing")
	}
	// Each run may be refused at most once per block period (it then waits
	// for Retry-After); a storm would be many refusals per period.
	if refused := total - minimum; refused > runs*blocks {
		t.Errorf("%d calls refused during %d block periods for %d runs: a retry storm", refused, blocks, runs)
	}
}

// TestCrashLoopGivesUp: a step during which the process dies every time
// fails the run once its attempts are spent, instead of looping forever.
func TestCrashLoopGivesUp(t *testing.T) {
	h := newHarness(t)
	const budget = 3
	crashAlways := func(c *workflow.Config) {
		c.Retry.MaxAttempts = budget
		c.CrashHook = func(p workflow.CrashPoint, s workflow.StepName) bool { return p == workflow.CrashAfterIntent }
	}
	h.start(crashAlways)
	r := h.newRun(workflow.Request{})
	for i := range budget + 1 {
		cur := h.feed.wait(t, r.ID, fmt.Sprintf("attempt %d", i+1), func(r *workflow.Run) bool {
			s := r.Step(workflow.StepPreflight)
			return s.Attempts == min(i+1, budget) || r.State == workflow.StateFailed
		})
		if cur.State == workflow.StateFailed {
			if i != budget {
				t.Fatalf("failed after %d restarts, want %d", i, budget)
			}
			if s := cur.Step(workflow.StepPreflight); s.Attempts != budget || !strings.Contains(cur.Error, "never finished") {
				t.Errorf("step %+v error %q", s, cur.Error)
			}
			return
		}
		h.stop()
		h.feed = newFeed()
		h.start(crashAlways)
	}
	t.Fatal("the run never gave up")
}

// TestProviderWithoutSigningKeyFails: authentik dropping the signing key
// fails the step with the reason (HS256), and the provider is still recorded.
func TestProviderWithoutSigningKeyFails(t *testing.T) {
	h := newHarness(t)
	h.ak.IgnoreSigningKey()
	h.start(nil)
	r := h.newRun(workflow.Request{})
	h.approve(r.ID, workflow.GateAuthentik)
	done := h.feed.waitState(t, r.ID, workflow.StateFailed)
	if s := done.Step(workflow.StepAuthentikProvider); s.Status != workflow.StepFailed || !strings.Contains(done.Error, "HS256") {
		t.Fatalf("step %+v error %q", s, done.Error)
	}
	provs := h.ak.Providers()
	if len(provs) != 1 || done.Resources.AuthentikProviderID != provs[0].PK {
		t.Errorf("the created provider is not recorded: %+v vs %d providers", done.Resources, len(provs))
	}
	if len(h.ak.Applications())+len(h.cf.IdentityProviders()) != 0 {
		t.Error("the run went on after an unusable provider")
	}
}

// Each step's intent goes into the commit that ended the step or gate before
// it when the step can start at once, and is still in the audit log.
func TestRunCommitsFoldIntents(t *testing.T) {
	h := newHarness(t)
	h.start(nil)
	before := h.store.Writes()
	r := h.newRun(workflow.Request{ApplicationName: "Grafana"})
	done := h.complete(r.ID)
	if done.State != workflow.StateSucceeded {
		t.Fatalf("run ended %s: %s", done.State, done.LastError())
	}
	// create (+ preflight intent), preflight result, authentik decision
	// (+ provider intent), provider result (+ application intent),
	// application result, Cloudflare decision (+ login method intent), login
	// method result (+ verify intent), verify result.
	if got := h.store.Writes() - before; got != 8 {
		t.Errorf("a run wrote %d times, want 8", got)
	}
	events, err := h.store.Events(t.Context(), r.ID)
	if err != nil {
		t.Fatal(err)
	}
	intents := map[workflow.StepName]int{}
	for _, e := range events {
		if e.Type == workflow.EventStepIntent {
			intents[e.Step]++
		}
	}
	for _, p := range workflow.Plan {
		if p.Kind == workflow.KindAction && intents[p.Name] != 1 {
			t.Errorf("%d intents of %s in the audit log, want 1", intents[p.Name], p.Name)
		}
	}
	for _, s := range done.Steps {
		if s.Kind == workflow.KindAction && s.Attempts != 1 {
			t.Errorf("%s took %d attempts, want 1", s.Name, s.Attempts)
		}
	}
}

// With the system clock a waiting run holds a timer, not a goroutine; the
// gate still expires when its deadline passes.
func TestGateExpiresOnSystemClock(t *testing.T) {
	h := newHarness(t)
	h.start(func(c *workflow.Config) {
		c.Clock = nil
		c.ApprovalTTL = 20 * time.Millisecond
	})
	r := h.newRun(workflow.Request{})
	got := h.feed.waitState(t, r.ID, workflow.StateExpired)
	if s := got.Step(workflow.GateAuthentik); s.Status != workflow.StepExpired {
		t.Errorf("gate %+v", s)
	}
}

// A front end's Yield holds the engine's background work back: a started
// run is neither read nor advanced, and no API is called, until it lets go.
func TestYieldHoldsBackgroundWork(t *testing.T) {
	h := newHarness(t)
	asked := make(chan struct{}, 1)
	release := make(chan struct{})
	h.start(func(c *workflow.Config) {
		c.Yield = func(ctx context.Context) (func(), error) {
			select {
			case asked <- struct{}{}:
			default:
			}
			select {
			case <-release:
				return func() {}, nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
	})
	r := h.newRun(workflow.Request{ApplicationName: "Grafana"})
	select {
	case <-asked:
	case <-time.After(20 * time.Second):
		t.Fatal("the engine went on with the run without yielding")
	}
	held, err := h.store.GetRun(context.Background(), r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if held.Version != 1 || held.State != workflow.StatePending {
		t.Errorf("while held back the run is version %d, %s; want 1, %s", held.Version, held.State, workflow.StatePending)
	}
	if n := h.ak.Calls("", ""); n != 0 {
		t.Errorf("authentik was called %d times while the engine was held back", n)
	}
	close(release)
	h.feed.waitGate(t, r.ID, workflow.GateAuthentik)
}

// Runs started while the front end holds background work back wait for it
// together, in one goroutine, not one each; once it lets go, every run goes on.
func TestRunsHeldBackWaitTogether(t *testing.T) {
	h := newHarness(t)
	var waiting, most atomic.Int32
	release := make(chan struct{})
	h.start(func(c *workflow.Config) {
		c.Yield = func(ctx context.Context) (func(), error) {
			n := waiting.Add(1)
			defer waiting.Add(-1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			select {
			case <-release:
				return func() {}, nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
	})
	before := runtime.NumGoroutine()
	var runs []*workflow.Run
	for i := range 20 {
		runs = append(runs, h.newRun(workflow.Request{ApplicationName: fmt.Sprintf("App %d", i)}))
	}
	if grew := runtime.NumGoroutine() - before; grew >= 10 {
		t.Errorf("%d goroutines more for %d runs held back; want one waiting for all", grew, len(runs))
	}
	if n := most.Load(); n > 1 {
		t.Errorf("%d goroutines waited for the front end at once; want 1", n)
	}
	close(release)
	for _, r := range runs {
		h.feed.waitGate(t, r.ID, workflow.GateAuthentik)
	}
}

// TestCrashedRunStaysDown: a run a CrashHook stopped is left alone by the
// engine that "crashed", as by a dead process, even when it is kicked again
// (here by the scan of open runs at start, which found it late); only a
// restart resumes it. Else a crash test may see two attempts in one life.
func TestCrashedRunStaysDown(t *testing.T) {
	h := newHarness(t)
	crashed, listing := make(chan struct{}), make(chan struct{})
	var once sync.Once
	var scanned atomic.Bool
	var driversAfterScan atomic.Int32
	logs := &signalHandler{Handler: slog.NewTextHandler(h.logs, nil), msg: "resuming run", seen: make(chan struct{}), once: &sync.Once{}}
	h.start(func(c *workflow.Config) {
		c.CrashHook = func(p workflow.CrashPoint, s workflow.StepName) bool {
			if p != workflow.CrashAfterIntent {
				return false
			}
			once.Do(func() { close(crashed) })
			return true
		}
		c.Store = &lateScan{Store: c.Store, listing: listing, wait: crashed}
		c.Logger = slog.New(logs)
		// Every driver yields first: one started after the scan counts.
		c.Yield = func(ctx context.Context) (func(), error) {
			if scanned.Load() {
				driversAfterScan.Add(1)
			}
			return func() {}, nil
		}
	})
	<-listing // the engine runs: the run's own kick starts its driver
	r := h.newRun(workflow.Request{})
	<-crashed
	<-logs.seen // the scan kicked the run (it logs after the kick)
	scanned.Store(true)
	h.stop() // waits for every driver
	if n := driversAfterScan.Load(); n != 0 {
		t.Errorf("%d drivers started for run %d after it crashed; want none until a restart", n, r.ID)
	}
	h.restart(nil)
	if got := h.feed.waitGate(t, r.ID, workflow.GateAuthentik); got == nil {
		t.Fatal("the restart did not resume the run")
	}
}

// lateScan holds the engine's start-up scan of open runs until wait
// closes, and closes listing when the scan starts.
type lateScan struct {
	workflow.Store
	listing chan<- struct{}
	wait    <-chan struct{}
	once    sync.Once
}

func (s *lateScan) ListRuns(ctx context.Context, opts workflow.ListOptions) ([]*workflow.Run, error) {
	first := false
	s.once.Do(func() { first = true })
	if first {
		close(s.listing)
		<-s.wait
		// Let the crashed driver return first, so that the scan's kick
		// comes after it (the case under test), not while it ends.
		for range 100 {
			runtime.Gosched()
		}
	}
	return s.Store.ListRuns(ctx, opts)
}

// signalHandler closes seen once a record with message msg is handled.
type signalHandler struct {
	slog.Handler
	msg  string
	seen chan struct{}
	once *sync.Once // shared with the handlers WithAttrs makes
}

func (h *signalHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.once.Do(func() { close(h.seen) })
	}
	return h.Handler.Handle(ctx, r)
}

func (h *signalHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &signalHandler{Handler: h.Handler.WithAttrs(as), msg: h.msg, seen: h.seen, once: h.once}
}
