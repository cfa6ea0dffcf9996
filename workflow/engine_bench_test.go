package workflow_test

import (
	"context"
	"crypto/x509"
	"fmt"
	"path/filepath"
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
)

// benchAllow lets everyone approve.
type benchAllow struct{}

func (benchAllow) Eligible(context.Context, string) (bool, string, error) { return true, "", nil }

// benchNotifier approves each gate the moment it opens and signals when a
// run ends. It never blocks the engine.
type benchNotifier struct {
	engine *workflow.Engine
	mu     sync.Mutex
	done   map[int64]chan workflow.State
	wg     sync.WaitGroup
}

func (n *benchNotifier) ch(id int64) chan workflow.State {
	n.mu.Lock()
	defer n.mu.Unlock()
	c := n.done[id]
	if c == nil {
		c = make(chan workflow.State, 1)
		n.done[id] = c
	}
	return c
}

func (n *benchNotifier) RunChanged(_ context.Context, r *workflow.Run, events []workflow.Event) {
	for _, ev := range events {
		switch {
		case ev.Type == workflow.EventGateOpened:
			g := r.Step(ev.Step)
			d := workflow.DecisionRequest{RunID: r.ID, Gate: g.Name, Nonce: g.Nonce, User: approver, Decision: workflow.Approve}
			n.wg.Go(func() { _, _ = n.engine.Decide(context.Background(), d) })
		case r.State.Terminal() && (ev.Type == workflow.EventSucceeded || ev.Type == workflow.EventFailed):
			n.ch(r.ID) <- r.State
		}
	}
}

// BenchmarkRun is one complete run through the engine and the bbolt store,
// against zero-latency fakes over HTTP (no contract validation: the
// validator would dominate), gates approved the moment they open. It
// reports the synced commits and API calls of a run.
func BenchmarkRun(b *testing.B) {
	ak := authentiktest.New(authentiktest.WithValidation())
	defer ak.Close()
	cf := cloudflaretest.New(accountID, cloudflaretest.WithoutContract())
	defer cf.Close()
	st, err := store.Open(filepath.Join(b.TempDir(), "ssobot.db"), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	akClient, err := authentik.New(ak.URL(), workflow.NewSecret(ak.Token()), ak.Client())
	if err != nil {
		b.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ak.CertPEM())
	n := &benchNotifier{done: map[int64]chan workflow.State{}}
	e, err := workflow.New(workflow.Config{
		Store:     st,
		Authentik: akClient,
		Access:    cloudflare.New(accountID, workflow.NewSecret(cf.Token()), cf.URL(), nil),
		Endpoints: oidc.New(oidc.WithRoots(roots)),
		Approvers: benchAllow{},
		Notifier:  n,
		Defaults:  workflow.Defaults{AuthentikURL: ak.URL()},
	})
	if err != nil {
		b.Fatal(err)
	}
	n.engine = e
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	defer func() {
		cancel()
		<-done
		n.wg.Wait()
	}()
	// Runs started before Run is ready are picked up by its resume scan.

	commits := st.Commits()
	akCalls, cfCalls := ak.Calls("", ""), cf.Calls("", "")
	i := 0
	for b.Loop() {
		i++
		// Each run its own login method name: preflight refuses a taken one.
		r, err := e.Start(ctx, workflow.Request{ApplicationName: fmt.Sprintf("App %d", i), LoginMethodName: fmt.Sprintf("authentik %d", i), RequestedBy: requester})
		if err != nil {
			b.Fatal(err)
		}
		select {
		case state := <-n.ch(r.ID):
			if state != workflow.StateSucceeded {
				got, _ := e.Get(ctx, r.ID)
				b.Fatalf("run %d ended %s: %s", r.ID, state, got.LastError())
			}
		case <-time.After(30 * time.Second):
			b.Fatalf("run %d did not finish", r.ID)
		}
	}
	per := float64(b.N)
	b.ReportMetric(float64(st.Commits()-commits)/per, "commits/op")
	b.ReportMetric(float64(ak.Calls("", "")-akCalls)/per, "authentik-calls/op")
	b.ReportMetric(float64(cf.Calls("", "")-cfCalls)/per, "cloudflare-calls/op")
}
