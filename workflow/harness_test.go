package workflow_test

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ssobot/ssobot/store"
	"github.com/ssobot/ssobot/workflow"
	"github.com/ssobot/ssobot/workflow/authentik"
	"github.com/ssobot/ssobot/workflow/authentik/authentiktest"
	"github.com/ssobot/ssobot/workflow/cloudflare"
	"github.com/ssobot/ssobot/workflow/cloudflare/cloudflaretest"
	"github.com/ssobot/ssobot/workflow/oidc"
	"github.com/ssobot/ssobot/workflow/workflowtest"
)

const (
	requester = "U_REQUESTER"
	approver  = "U_APPROVER"
	accountID = "0123456789abcdef0123456789abcdef"
)

// approvers is a static approver list: the bot implements the real one.
type approvers struct {
	mu  sync.Mutex
	ids map[string]bool
	all bool
}

func (a *approvers) Eligible(_ context.Context, user string) (bool, string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.all || a.ids[user] {
		return true, "", nil
	}
	return false, user + " is not an approver", nil
}

// feed is a Notifier that lets tests wait for a run to reach a state.
type feed struct {
	mu      sync.Mutex
	latest  map[int64]*workflow.Run
	changed chan struct{}
}

func newFeed() *feed { return &feed{latest: map[int64]*workflow.Run{}, changed: make(chan struct{})} }

func (f *feed) RunChanged(_ context.Context, r *workflow.Run, _ []workflow.Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if old := f.latest[r.ID]; old == nil || old.Version < r.Version {
		f.latest[r.ID] = r
	}
	close(f.changed)
	f.changed = make(chan struct{})
}

// wait blocks until the run satisfies pred.
func (f *feed) wait(t *testing.T, id int64, what string, pred func(*workflow.Run) bool) *workflow.Run {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		f.mu.Lock()
		r, ch := f.latest[id], f.changed
		f.mu.Unlock()
		if r != nil && pred(r) {
			return r
		}
		select {
		case <-ch:
		case <-ctx.Done():
			state := "unknown"
			if r != nil {
				state = fmt.Sprintf("%s (current %v, error %q, problems %q)", r.State, r.Current(), r.LastError(), r.Problems)
			}
			t.Fatalf("run %d never reached %s; last state %s", id, what, state)
		}
	}
}

func (f *feed) waitState(t *testing.T, id int64, states ...workflow.State) *workflow.Run {
	t.Helper()
	return f.wait(t, id, fmt.Sprint(states), func(r *workflow.Run) bool { return slices.Contains(states, r.State) })
}

// waitGate waits for the named gate to be open.
func (f *feed) waitGate(t *testing.T, id int64, gate workflow.StepName) *workflow.Step {
	t.Helper()
	r := f.wait(t, id, "gate "+string(gate), func(r *workflow.Run) bool {
		g := r.OpenGate()
		return (g != nil && g.Name == gate) || r.State.Terminal()
	})
	g := r.OpenGate()
	if g == nil {
		t.Fatalf("run %d ended %s before gate %s: %s %q", id, r.State, gate, r.LastError(), r.Problems)
	}
	return g
}

type harness struct {
	t      *testing.T
	ak     *authentiktest.Server
	cf     *cloudflaretest.Server
	clock  *workflowtest.Clock
	dbPath string
	logs   *workflowtest.Buffer
	appr   *approvers
	feed   *feed

	store  *store.Store
	engine *workflow.Engine
	stop   func()
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	// Every request the engine makes is validated against both authentik
	// schemas and Cloudflare's, when ../shared/contracts is there.
	ak := authentiktest.New(authentiktest.WithValidation(authentiktest.Contract2026_8, authentiktest.Contract2026_11))
	t.Cleanup(ak.Close)
	cf := cloudflaretest.New(accountID)
	t.Cleanup(cf.Close)
	if len(ak.Validating()) < 2 || !cf.Validating() {
		t.Log("contracts not found beside the repository (../shared/contracts): requests are not validated")
	}
	t.Cleanup(func() {
		for _, err := range ak.ContractErrors() {
			t.Errorf("authentik contract: %v", err)
		}
		for _, err := range cf.ContractErrors() {
			t.Errorf("cloudflare contract: %v", err)
		}
	})
	h := &harness{
		t: t, ak: ak, cf: cf,
		clock:  workflowtest.NewClock(time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)),
		dbPath: filepath.Join(t.TempDir(), "ssobot.db"),
		logs:   &workflowtest.Buffer{},
		appr:   &approvers{ids: map[string]bool{approver: true, requester: true}},
		feed:   newFeed(),
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go h.clock.AutoAdvance(ctx, time.Hour)
	return h
}

// config is the engine configuration over the fakes; mod may change it.
func (h *harness) config(mod func(*workflow.Config)) workflow.Config {
	h.t.Helper()
	akClient := h.ak.Client()
	akClient.Timeout = 2 * time.Second
	ak, err := authentik.New(h.ak.URL(), workflow.NewSecret(h.ak.Token()), akClient)
	if err != nil {
		h.t.Fatal(err)
	}
	cf := cloudflare.New(accountID, workflow.NewSecret(h.cf.Token()), h.cf.URL(), nil)
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(h.ak.CertPEM()) {
		h.t.Fatal("fake authentik certificate not PEM")
	}
	cfg := workflow.Config{
		Store:     canonicalStore{h.store, h.t},
		Authentik: ak,
		Access:    cf,
		Endpoints: oidc.New(oidc.WithRoots(roots)),
		Approvers: h.appr,
		Notifier:  h.feed,
		Clock:     h.clock,
		Logger:    slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Defaults:  workflow.Defaults{AuthentikURL: h.ak.URL()},
		Retry:     workflow.RetryPolicy{MaxAttempts: 8, Base: time.Second, Max: time.Minute},
	}
	if mod != nil {
		mod(&cfg)
	}
	return cfg
}

// start opens the database and runs a fresh engine on it.
func (h *harness) start(mod func(*workflow.Config)) {
	h.t.Helper()
	st, err := store.Open(h.dbPath, store.Options{Timeout: time.Second})
	if err != nil {
		h.t.Fatal(err)
	}
	h.store = st
	e, err := workflow.New(h.config(mod))
	if err != nil {
		h.t.Fatal(err)
	}
	h.engine = e
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	stopped := false
	h.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			h.t.Errorf("engine run: %v", err)
		}
		if err := st.Check(); err != nil {
			h.t.Errorf("database check: %v", err)
		}
		if err := st.Close(); err != nil {
			h.t.Errorf("close store: %v", err)
		}
	}
	h.t.Cleanup(h.stop)
}

func (h *harness) newRun(req workflow.Request) *workflow.Run {
	h.t.Helper()
	if req.ApplicationName == "" {
		req.ApplicationName = "Grafana"
	}
	if req.RequestedBy == "" {
		req.RequestedBy = requester
	}
	r, err := h.engine.Start(context.Background(), req)
	if err != nil {
		h.t.Fatalf("start: %v", err)
	}
	return r
}

func (h *harness) approve(id int64, gate workflow.StepName) {
	h.t.Helper()
	g := h.feed.waitGate(h.t, id, gate)
	_, err := h.engine.Decide(context.Background(), workflow.DecisionRequest{
		RunID: id, Gate: gate, Nonce: g.Nonce, User: approver, Decision: workflow.Approve,
	})
	if err != nil {
		h.t.Fatalf("approve %s: %v", gate, err)
	}
}

// restart stops the engine and starts a new one (mod may change its
// configuration) on the same database, with a fresh feed, as after a
// process restart.
func (h *harness) restart(mod func(*workflow.Config)) {
	h.t.Helper()
	h.stop()
	h.feed = newFeed()
	h.start(mod)
}

// approveAs decides the open gate g of run id as user, approving.
func (h *harness) approveAs(id int64, g *workflow.Step, user string) (*workflow.Run, error) {
	return h.engine.Decide(context.Background(), workflow.DecisionRequest{RunID: id, Gate: g.Name, Nonce: g.Nonce, User: user, Decision: workflow.Approve})
}

// complete drives a run through both gates to its end.
func (h *harness) complete(id int64) *workflow.Run {
	h.t.Helper()
	h.approve(id, workflow.GateAuthentik)
	h.approve(id, workflow.GateCloudflare)
	return h.feed.waitState(h.t, id, workflow.StateSucceeded, workflow.StateFailed)
}

// assertOneOfEach checks the invariant of every test: each object exists
// exactly once and belongs to the run's records.
func (h *harness) assertOneOfEach(r *workflow.Run) {
	h.t.Helper()
	provs, apps, idps := h.ak.Providers(), h.ak.Applications(), h.cf.IdentityProviders()
	if len(provs) != 1 || len(apps) != 1 || len(idps) != 1 {
		h.t.Fatalf("want exactly one provider, application and login method; got %d, %d, %d", len(provs), len(apps), len(idps))
	}
	if provs[0].PK != r.Resources.AuthentikProviderID || provs[0].ClientID != r.Params.ClientID {
		h.t.Errorf("provider %+v is not the run's %+v", provs[0].PK, r.Resources)
	}
	if apps[0].Slug != r.Resources.AuthentikApplicationSlug {
		h.t.Errorf("application %s is not the run's %s", apps[0].Slug, r.Resources.AuthentikApplicationSlug)
	}
	if idps[0].ID != r.Resources.CloudflareIdentityProviderID {
		h.t.Errorf("login method %s is not the run's %s", idps[0].ID, r.Resources.CloudflareIdentityProviderID)
	}
}

func isRefused(err error) bool { return errors.Is(err, workflow.ErrRefused) }

func mustAuthentik(t *testing.T, h *harness, token string) workflow.Authentik {
	t.Helper()
	ak, err := authentik.New(h.ak.URL(), workflow.NewSecret(token), h.ak.Client())
	if err != nil {
		t.Fatal(err)
	}
	return ak
}

// untrustingEndpoints trusts no certificate, as a system without the fake's
// root would.
func untrustingEndpoints() workflow.Endpoints { return oidc.New(oidc.WithRoots(x509.NewCertPool())) }

// holdDrivers makes the engine's drivers wait until hold closes, so that
// nothing but the test's own calls changes a run meanwhile.
func holdDrivers(hold <-chan struct{}) func(*workflow.Config) {
	return func(c *workflow.Config) {
		c.Yield = func(ctx context.Context) (func(), error) {
			select {
			case <-hold:
				return func() {}, nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
	}
}

// canonicalStore checks that every run the engine writes decodes back to
// itself (times in UTC, no value the encoding drops): the store keeps the
// run an update committed as the decoding of its bytes (its memo), so a
// run that did not round-trip would read differently from the memo than
// from the disk.
type canonicalStore struct {
	*store.Store
	t testing.TB
}

func (s canonicalStore) UpdateRun(ctx context.Context, id int64, fn func(r *workflow.Run) ([]workflow.Event, error)) (*workflow.Run, error) {
	r, err := s.Store.UpdateRun(ctx, id, fn)
	if err == nil {
		b, merr := json.Marshal(r)
		var back workflow.Run
		if uerr := json.Unmarshal(b, &back); merr != nil || uerr != nil || !reflect.DeepEqual(&back, r) {
			s.t.Errorf("run %d as written does not decode back to itself (%v, %v):\nwritten %+v\ndecoded %+v", id, merr, uerr, r, &back)
		}
	}
	return r, err
}
