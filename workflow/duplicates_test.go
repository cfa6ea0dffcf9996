package workflow_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ssobot/ssobot/workflow"
	"github.com/ssobot/ssobot/workflow/cloudflare"
	"github.com/ssobot/ssobot/workflow/cloudflare/cloudflaretest"
)

// lateCreate stands in front of the Cloudflare fake. The first create of a
// login method reaches the server but gets no answer: it is held until the
// client gives up, and the fake applies it later, as a server whose answer
// was lost may.
type lateCreate struct {
	h *harness
	// afterNextList applies the held create right after the next list
	// request is answered: later than anything the engine can wait for.
	afterNextList bool
	// applyAfter, otherwise, applies it once the harness clock has moved
	// this far past its receipt, before answering the first request on
	// login methods from then on.
	applyAfter time.Duration

	mu         sync.Mutex
	posts      int
	held       *http.Request
	heldBody   []byte
	receivedAt time.Time
	applied    bool
}

// client is the Cloudflare adapter through the proxy; its HTTP timeout is
// what the held create waits for.
func (l *lateCreate) client(t *testing.T) *cloudflare.Client {
	srv := httptest.NewServer(l)
	t.Cleanup(srv.Close)
	return cloudflare.New(accountID, workflow.NewSecret(l.h.cf.Token()), srv.URL+"/client/v4", &http.Client{Timeout: 300 * time.Millisecond})
}

func (l *lateCreate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	onIDPs := strings.Contains(r.URL.Path, "identity_providers")
	isList := r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "identity_providers")
	if onIDPs && r.Method == http.MethodPost {
		l.mu.Lock()
		l.posts++
		first := l.posts == 1
		if first {
			// Held from its receipt: whatever the engine does next comes after.
			body, _ := io.ReadAll(r.Body)
			l.held, l.heldBody, l.receivedAt = r.Clone(context.Background()), body, l.h.clock.Now()
		}
		l.mu.Unlock()
		if first {
			<-r.Context().Done() // the client gave up: no answer
			return
		}
	}
	if onIDPs && !l.afterNextList {
		l.applyIf(func() bool { return !l.h.clock.Now().Before(l.receivedAt.Add(l.applyAfter)) })
	}
	l.h.cf.ServeHTTP(w, r)
	if isList && l.afterNextList {
		if f, ok := w.(http.Flusher); ok {
			f.Flush() // the list's answer is out before the create lands
		}
		l.applyIf(func() bool { return true })
	}
}

// applyIf applies the held create, once, when due says so.
func (l *lateCreate) applyIf(due func() bool) {
	l.mu.Lock()
	req, body := l.held, l.heldBody
	if req == nil || l.applied || !due() {
		l.mu.Unlock()
		return
	}
	l.applied = true
	l.mu.Unlock()
	req.Body = io.NopCloser(bytes.NewReader(body))
	l.h.cf.ServeHTTP(httptest.NewRecorder(), req)
}

func (l *lateCreate) creates() (sent int, applied bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.posts, l.applied
}

// deleteLoginMethod deletes a login method as a person would in the
// dashboard. It may be called from a fake's handler: it does not stop the test.
func deleteLoginMethod(t *testing.T, h *harness, id string) {
	t.Helper()
	req := httptest.NewRequest(http.MethodDelete, "/client/v4/accounts/"+accountID+"/access/identity_providers/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+h.cf.Token())
	rec := httptest.NewRecorder()
	h.cf.ServeHTTP(rec, req)
	if rec.Code != http.StatusAccepted {
		t.Errorf("delete login method %s: %d %s", id, rec.Code, rec.Body)
	}
}

// TestLateAppliedCreateFailsVerify: the first create times out on the
// client and the server applies it only after the second attempt has
// listed, so the second attempt creates again. Verify counts the run's
// login methods again (the step took more than one attempt), fails naming
// the one to delete, and deletes nothing; once a person deleted it, a
// retry verifies again and the run succeeds.
func TestLateAppliedCreateFailsVerify(t *testing.T) {
	h := newHarness(t)
	late := &lateCreate{h: h, afterNextList: true}
	h.start(func(c *workflow.Config) { c.Access = late.client(t) })
	r := h.newRun(workflow.Request{})
	done := h.complete(r.ID)
	if sent, applied := late.creates(); sent != 2 || !applied {
		t.Fatalf("%d creates sent, the first applied: %v; want 2, applied (the setup of the test)", sent, applied)
	}
	idps := h.cf.IdentityProviders()
	if len(idps) != 2 {
		t.Fatalf("%d login methods; want both creates' (ssobot deletes nothing)", len(idps))
	}
	// The late one was applied before the second create.
	extra, kept := idps[0].ID, idps[1].ID
	if done.State != workflow.StateFailed || done.Step(workflow.StepVerify).Status != workflow.StepFailed {
		t.Fatalf("run %s, verify %s (%s); want verify failed", done.State, done.Step(workflow.StepVerify).Status, done.Error)
	}
	if got := done.Resources.CloudflareIdentityProviderID; got != kept {
		t.Errorf("the run recorded login method %s; want %s, the one its last attempt created", got, kept)
	}
	for _, want := range []string{extra, "client secret", "delete " + extra, "keep " + kept, "retry the run"} {
		if !strings.Contains(done.Error, want) {
			t.Errorf("run error %q lacks %q", done.Error, want)
		}
	}
	if strings.Contains(done.Error, "delete "+kept) {
		t.Errorf("run error %q asks to delete the login method the run keeps", done.Error)
	}

	deleteLoginMethod(t, h, extra)
	if _, err := h.engine.Retry(context.Background(), r.ID, requester); err != nil {
		t.Fatal(err)
	}
	done = h.feed.waitState(t, r.ID, workflow.StateSucceeded, workflow.StateFailed)
	if done.State != workflow.StateSucceeded {
		t.Fatalf("retried run ended %s: %s", done.State, done.Error)
	}
	h.assertOneOfEach(done)
}

// TestLoginMethodStepSeesDuplicates: when the list before a create holds
// two login methods of the run (two earlier creates applied), the step
// adopts the first listed, records the other in an event naming it, and
// verify fails until it is gone.
func TestLoginMethodStepSeesDuplicates(t *testing.T) {
	h := newHarness(t)
	// The first attempt's create is made, but its answer is lost.
	h.cf.AddFault(cloudflaretest.Fault{Method: http.MethodPost, PathContains: "/identity_providers", Kind: cloudflaretest.FaultApplyThenReset, Times: 1})
	var once sync.Once
	var run *workflow.Run
	h.start(func(c *workflow.Config) {
		// Between the attempts another create of the run lands (one the
		// first attempt's client sent twice, say).
		c.CrashHook = func(p workflow.CrashPoint, s workflow.StepName) bool {
			if p == workflow.CrashAfterResult && s == workflow.StepCloudflareLoginMethod {
				once.Do(func() {
					own := h.cf.IdentityProviders()[0]
					own.ID = ""
					h.cf.AddIdentityProvider(own)
				})
			}
			return false
		}
	})
	run = h.newRun(workflow.Request{})
	done := h.complete(run.ID)
	idps := h.cf.IdentityProviders()
	if len(idps) != 2 || idps[0].Config.ClientID != done.Params.ClientID || idps[1].Config.ClientID != done.Params.ClientID {
		t.Fatalf("login methods %+v; want two of the run's", idps)
	}
	first, second := idps[0].ID, idps[1].ID
	s := done.Step(workflow.StepCloudflareLoginMethod)
	if s.Status != workflow.StepSucceeded || s.Attempts != 2 || done.Resources.CloudflareIdentityProviderID != first {
		t.Fatalf("login method step %s after %d attempts, recorded %q; want succeeded on the second, recording %s",
			s.Status, s.Attempts, done.Resources.CloudflareIdentityProviderID, first)
	}
	if n := h.cf.Calls(http.MethodPost, "/identity_providers"); n != 1 {
		t.Errorf("%d creates; want the first attempt's only", n)
	}
	events, err := h.engine.Events(context.Background(), run.ID)
	if err != nil {
		t.Fatal(err)
	}
	noted := false
	for _, ev := range events {
		if ev.Type == workflow.EventNote && ev.Step == workflow.StepCloudflareLoginMethod && ev.Data["duplicate_identity_provider_ids"] == second {
			noted = strings.Contains(ev.Message, "delete "+second)
		}
	}
	if !noted {
		t.Errorf("no event names %s as a duplicate to delete", second)
	}
	if done.State != workflow.StateFailed || !strings.Contains(done.Error, "delete "+second) {
		t.Errorf("run %s: %q; want verify failed, naming %s", done.State, done.Error, second)
	}
}

// TestPageShiftDuringReconcile: the first create is applied but its answer
// lost, and the run's login method is the 51st, on page 2. While the second
// attempt lists, a person deletes another login method between its two
// page reads: the run's own moves onto page 1, already read, and page 2
// comes back without it. The list sees total_count change and reads again,
// so the second attempt finds the run's own instead of creating another.
func TestPageShiftDuringReconcile(t *testing.T) {
	h := newHarness(t)
	for i := range 50 {
		h.cf.AddIdentityProvider(cloudflaretest.IdentityProvider{Name: fmt.Sprintf("other %02d", i), Type: "onetimepin"})
	}
	first := h.cf.IdentityProviders()[0].ID
	h.cf.AddFault(cloudflaretest.Fault{Method: http.MethodPost, PathContains: "identity_providers", Kind: cloudflaretest.FaultApplyThenReset, Times: 1})
	var mu sync.Mutex
	posts, deleted := 0, false
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		isList := strings.HasSuffix(r.URL.Path, "identity_providers")
		mu.Lock()
		if isList && r.Method == http.MethodPost {
			posts++
		}
		mu.Unlock()
		h.cf.ServeHTTP(w, r)
		mu.Lock()
		del := isList && r.Method == http.MethodGet && r.URL.Query().Get("page") == "1" && posts == 1 && !deleted
		deleted = deleted || del
		mu.Unlock()
		if del {
			deleteLoginMethod(t, h, first)
		}
	}))
	t.Cleanup(proxy.Close)
	h.start(func(c *workflow.Config) {
		c.Access = cloudflare.New(accountID, workflow.NewSecret(h.cf.Token()), proxy.URL+"/client/v4", nil)
	})
	r := h.newRun(workflow.Request{})
	done := h.complete(r.ID)
	var own []string
	for _, x := range h.cf.IdentityProviders() {
		if x.Config.ClientID == done.Params.ClientID {
			own = append(own, x.ID)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if !deleted || posts != 1 {
		t.Fatalf("deleted: %v, %d creates sent; want the deletion made, and the first attempt's create only", deleted, posts)
	}
	if done.State != workflow.StateSucceeded || len(own) != 1 || done.Resources.CloudflareIdentityProviderID != own[0] {
		t.Fatalf("run %s (%s), recorded %q; the run's login methods %v; want it succeeded with its one login method",
			done.State, done.Error, done.Resources.CloudflareIdentityProviderID, own)
	}
}

// retryWait is how long after it failed the step's first failed attempt
// was set to be tried again, from its event.
func retryWait(t *testing.T, h *harness, id int64, step workflow.StepName) time.Duration {
	t.Helper()
	events, err := h.engine.Events(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range events {
		if ev.Type == workflow.EventAttemptFailed && ev.Step == step {
			at, err := time.Parse(time.RFC3339, ev.Data["retry_at"])
			if err != nil {
				t.Fatal(err)
			}
			return at.Sub(ev.At)
		}
	}
	t.Fatalf("no failed attempt of %s", step)
	return 0
}

// TestUnansweredCreateWaitsBeforeListingAgain: a create that timed out on
// the client may still be applied by the server. The next attempt waits
// UnansweredCreateWait before it lists, so it finds the login method the
// server applied meanwhile instead of creating a second one; a wait longer
// than MaxRetryAfter is kept too, not taken for one set by a clock since
// set back. A failed list, or a create refused with 429, is retried after
// the usual backoff.
func TestUnansweredCreateWaitsBeforeListingAgain(t *testing.T) {
	const wait = 30 * time.Second
	for _, tt := range []struct {
		name string
		wait time.Duration
		// applyAfter is when, on the engine's clock, the server applies
		// the create after it was received: before the wait is out.
		applyAfter time.Duration
	}{
		{"create unanswered", wait, 20 * time.Second},
		{"create unanswered, wait above MaxRetryAfter", 10 * time.Minute, workflow.MaxRetryAfter + 2*time.Minute},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			late := &lateCreate{h: h, applyAfter: tt.applyAfter}
			h.start(func(c *workflow.Config) {
				c.Access = late.client(t)
				c.UnansweredCreateWait = tt.wait
			})
			r := h.newRun(workflow.Request{})
			done := h.complete(r.ID)
			if sent, applied := late.creates(); sent != 1 || !applied {
				t.Errorf("%d creates sent, the first applied: %v; want the first only, applied", sent, applied)
			}
			if done.State != workflow.StateSucceeded {
				t.Fatalf("run %s: %s", done.State, done.Error)
			}
			if got := retryWait(t, h, r.ID, workflow.StepCloudflareLoginMethod); got != tt.wait {
				t.Errorf("the attempt after the unanswered create was due %s after it, want %s", got, tt.wait)
			}
			events, err := h.engine.Events(context.Background(), r.ID)
			if err != nil {
				t.Fatal(err)
			}
			for _, ev := range events {
				if ev.Type == workflow.EventNote && strings.Contains(ev.Message, "further ahead than the longest backoff") {
					t.Errorf("the wait was pulled in: %s", ev.Message)
				}
			}
			if warns := logLines(h, "clock was set back"); len(warns) > 0 {
				t.Errorf("warned of a clock set back:\n%s", strings.Join(warns, "\n"))
			}
			h.assertOneOfEach(done)
		})
	}
	// Failures after which nothing can have been created.
	for _, tt := range []struct {
		name  string
		fault cloudflaretest.Fault
	}{
		{"list failed", cloudflaretest.Fault{Method: http.MethodGet, PathContains: "/identity_providers", Kind: cloudflaretest.FaultStatus, Status: http.StatusServiceUnavailable, Times: 1}},
		{"create refused with 429", cloudflaretest.Fault{Method: http.MethodPost, PathContains: "/identity_providers", Kind: cloudflaretest.FaultStatus, Status: http.StatusTooManyRequests, Times: 1}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.start(func(c *workflow.Config) { c.UnansweredCreateWait = wait })
			r := h.newRun(workflow.Request{})
			h.approve(r.ID, workflow.GateAuthentik)
			h.feed.waitGate(t, r.ID, workflow.GateCloudflare)
			h.cf.AddFault(tt.fault)
			h.approve(r.ID, workflow.GateCloudflare)
			done := h.feed.waitState(t, r.ID, workflow.StateSucceeded, workflow.StateFailed)
			if done.State != workflow.StateSucceeded {
				t.Fatalf("run %s: %s", done.State, done.Error)
			}
			h.assertOneOfEach(done)
			if got := retryWait(t, h, r.ID, workflow.StepCloudflareLoginMethod); got >= wait {
				t.Errorf("the next attempt was due %s after the failed one; want the usual backoff, under %s", got, wait)
			}
		})
	}
}
