//go:build !ssobot_server

package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ssobot/ssobot/bot"
	"github.com/ssobot/ssobot/bot/slacktest"
	"github.com/ssobot/ssobot/store"
	"github.com/ssobot/ssobot/workflow"
	"github.com/ssobot/ssobot/workflow/authentik/authentiktest"
	"github.com/ssobot/ssobot/workflow/cloudflare/cloudflaretest"
)

// The bench's cast: the demo's workspace.
const (
	benchRequester = demoRequester
	benchApprover  = demoApprover
	benchChannel   = demoChannel
)

// benchEnv is ssobot wired by newApp, as serve and demo wire it, against
// fakes in this process, with its Slack endpoints and admin API served on
// loopback. The fakes do not validate against the OpenAPI contracts: the
// bench measures ssobot, not the validator.
//
// One thing differs from serve: the engine's notifier is a tee that also
// tells the bench when a run ends and, with AutoApprove, approves each gate
// the moment it opens, through the engine's API.
type benchEnv struct {
	ak     *authentiktest.Server
	cf     *cloudflaretest.Server
	sl     *slacktest.Server
	secret string
	dir    string
	app    *app
	store  *benchStore
	logs   *benchLogs

	slackURL string // http://127.0.0.1:port of /slack/...
	adminURL string

	slackCalls atomic.Int64     // calls the Slack fake received
	slackBy    map[string]int64 // the same by method; under mu
	stopFeed   func()
	feedDone   chan struct{}
	onSlack    func(slacktest.Call) // set before traffic starts; called from the feed goroutine

	autoApprove bool
	mu          sync.Mutex
	decided     map[string]bool // run|gate|nonce already approved
	done        map[int64]chan struct{}
	final       map[int64]workflow.State
	approvals   sync.WaitGroup

	stopServe context.CancelFunc
	served    chan error
}

type benchEnvOptions struct {
	// AutoApprove approves each gate the moment it opens, through the
	// engine's API: the engine's cost without Slack in the way.
	AutoApprove bool
	// ClickApprove has bob click Approve, signed, on the Slack endpoints
	// whenever the button shows on a run's message: the path a person takes.
	ClickApprove bool
	// Retry replaces the engine's retry policy (zero: the default).
	Retry workflow.RetryPolicy
	// UnansweredCreateWait replaces the engine's wait after a create left
	// unanswered (zero: serve's).
	UnansweredCreateWait time.Duration
	// RecordCommits keeps what each commit of each run wrote (benchStore):
	// for the section that lists a run's commits, and only there, as it
	// costs the measured requests time and the process memory.
	RecordCommits bool
}

func newBenchEnv(ctx context.Context, o benchEnvOptions) (_ *benchEnv, err error) {
	e := &benchEnv{
		ak:          authentiktest.New(authentiktest.WithValidation()),
		cf:          cloudflaretest.New(demoAccountID, cloudflaretest.WithTeam(demoTeam), cloudflaretest.WithoutContract()),
		sl:          slacktest.NewServer(slacktest.WithoutHistory()),
		secret:      randomHex(16),
		logs:        &benchLogs{},
		autoApprove: o.AutoApprove,
		decided:     map[string]bool{},
		done:        map[int64]chan struct{}{},
		final:       map[int64]workflow.State{},
		feedDone:    make(chan struct{}),
		slackBy:     map[string]int64{},
	}
	defer func() {
		if err != nil {
			e.Close()
		}
	}()
	e.sl.AddUser(slacktest.User{ID: benchRequester, Name: "alice", RealName: "Alice Liddell"})
	e.sl.AddUser(slacktest.User{ID: benchApprover, Name: "bob", RealName: "Bob Bobson"})
	e.sl.AddChannel(benchChannel, "platform", true)

	// Count every Slack call from the first one on.
	feed, stop := e.sl.Subscribe()
	e.stopFeed = stop
	go func() {
		defer close(e.feedDone)
		for c := range feed {
			e.slackCalls.Add(1)
			e.mu.Lock()
			e.slackBy[c.Method]++
			fn := e.onSlack
			e.mu.Unlock()
			if fn != nil {
				fn(c)
			}
		}
	}()

	roots, err := fakeRoots(e.ak)
	if err != nil {
		return nil, err
	}
	if e.dir, err = os.MkdirTemp("", "ssobot-bench-"); err != nil {
		return nil, fmt.Errorf("temporary directory: %w", err)
	}
	cfg := fakesConfig(e.ak, e.cf, e.sl, e.secret, filepath.Join(e.dir, "ssobot.db"), benchApprover)
	opts := appOptions{Logger: slog.New(e.logs), Roots: roots}
	if e.app, err = newApp(cfg, opts); err != nil {
		return nil, err
	}
	// The engine again, as wire builds it, but with the tee as notifier and
	// a store that can record what each commit wrote.
	e.store = &benchStore{Store: e.app.store, record: o.RecordCommits}
	engCfg := benchEngineConfig(e.app, opts, e.store, e, o.Retry)
	if o.UnansweredCreateWait > 0 {
		engCfg.UnansweredCreateWait = o.UnansweredCreateWait
	}
	eng, err := workflow.New(engCfg)
	if err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	e.app.engine = eng
	e.app.bot.Attach(eng)

	slackLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	adminLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		slackLn.Close()
		return nil, err
	}
	e.slackURL = "http://" + slackLn.Addr().String()
	e.adminURL = "http://" + adminLn.Addr().String()
	if o.ClickApprove {
		client := newBenchClient(4)
		e.mu.Lock()
		e.onSlack = clickOnButtons(e.sl, 0, func(body []byte) {
			e.approvals.Go(func() {
				req := slacktest.SignedRequest(e.slackURL+slackInteractionsPath, e.secret, body, time.Now())
				resp, err := client.Do(req)
				if err != nil {
					e.logs.add(fmt.Sprintf("click: %v", err))
					return
				}
				resp.Body.Close()
			})
		})
		e.mu.Unlock()
	}
	serveCtx, stopServe := context.WithCancel(context.WithoutCancel(ctx))
	e.stopServe = stopServe
	e.served = make(chan error, 1)
	// Serve starts the engine in a goroutine: a run started before the
	// engine runs is picked up by its resume scan, so nothing waits here.
	go func() { e.served <- e.app.Serve(serveCtx, slackLn, adminLn) }()
	return e, nil
}

// clickOnButtons returns a Slack call observer that, whenever a run newer
// than after shows an Approve button on its message, has bob click it once
// and hands the signed-to-be click body to post. It runs on the feed
// goroutine, one call at a time.
func clickOnButtons(sl *slacktest.Server, after int64, post func(body []byte)) func(slacktest.Call) {
	clicked := map[string]bool{}
	return func(c slacktest.Call) {
		var ts string
		switch {
		case c.Error != "" || c.Param("channel") != benchChannel:
			return
		case c.Method == "chat.postMessage" && c.Param("thread_ts") == "":
			ts, _ = c.Result["ts"].(string)
		case c.Method == "chat.update":
			ts = c.Param("ts")
		default:
			return
		}
		msg, ok := sl.Message(benchChannel, ts)
		if !ok {
			return
		}
		btn, ok := msg.Button(bot.ActionApprove)
		if !ok || clicked[btn.Value] {
			return
		}
		id, _, _, err := bot.ParseButtonValue(btn.Value)
		if err != nil || id <= after {
			return
		}
		clicked[btn.Value] = true
		a, err := sl.ClickButton(benchChannel, ts, bot.ActionApprove, benchApprover)
		if err != nil {
			return // the message changed meanwhile: its next change clicks
		}
		post([]byte(slacktest.BlockActionsPayload(a).Encode()))
	}
}

// benchEngineConfig is the engine configuration wire builds, with the
// bench's store, notifier and retry policy.
func benchEngineConfig(a *app, opts appOptions, st workflow.Store, n workflow.Notifier, retry workflow.RetryPolicy) workflow.Config {
	cfg := a.engineConfig(opts)
	cfg.Store, cfg.Notifier, cfg.Retry = st, n, retry
	return cfg
}

// RunChanged implements workflow.Notifier: the bot first, as in serve, then
// the bench's bookkeeping. Like every notifier it must not block.
func (e *benchEnv) RunChanged(ctx context.Context, run *workflow.Run, events []workflow.Event) {
	e.app.bot.RunChanged(ctx, run, events)
	if run.State.Terminal() {
		e.mu.Lock()
		if _, ok := e.final[run.ID]; !ok {
			e.final[run.ID] = run.State
			close(e.doneLocked(run.ID))
		}
		e.mu.Unlock()
		return
	}
	g := run.OpenGate()
	if !e.autoApprove || run.State != workflow.StateAwaitingApproval || g == nil {
		return
	}
	key := fmt.Sprintf("%d|%s|%s", run.ID, g.Name, g.Nonce)
	e.mu.Lock()
	seen := e.decided[key]
	e.decided[key] = true
	e.mu.Unlock()
	if seen {
		return
	}
	d := workflow.DecisionRequest{RunID: run.ID, Gate: g.Name, Nonce: g.Nonce, User: benchApprover, Decision: workflow.Approve}
	e.approvals.Go(func() {
		if _, err := e.app.engine.Decide(context.Background(), d); err != nil {
			e.logs.add(fmt.Sprintf("approve run %d gate %s: %v", d.RunID, d.Gate, err))
		}
	})
}

func (e *benchEnv) doneLocked(id int64) chan struct{} {
	ch := e.done[id]
	if ch == nil {
		ch = make(chan struct{})
		e.done[id] = ch
	}
	return ch
}

// start starts a run as alice would, through the engine's API. Each run
// gets its own login method name: preflight refuses a name already taken.
func (e *benchEnv) start(ctx context.Context, name string) (*workflow.Run, error) {
	return e.app.engine.Start(ctx, workflow.Request{ApplicationName: name, LoginMethodName: "authentik " + name, RequestedBy: benchRequester, Channel: benchChannel})
}

// wait blocks until the run ends and returns its final state.
func (e *benchEnv) wait(ctx context.Context, id int64) (workflow.State, error) {
	e.mu.Lock()
	ch := e.doneLocked(id)
	e.mu.Unlock()
	select {
	case <-ch:
	case <-ctx.Done():
		r, err := e.app.engine.Get(context.WithoutCancel(ctx), id)
		if err == nil {
			return "", fmt.Errorf("run %d still %s (step %v): %w", id, r.State, r.Current(), ctx.Err())
		}
		return "", fmt.Errorf("run %d: %w", id, ctx.Err())
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.final[id], nil
}

// slackMethods returns the Slack calls so far by method.
func (e *benchEnv) slackMethods() map[string]int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return maps.Clone(e.slackBy)
}

// benchCounters are the counters a run moves.
type benchCounters struct {
	commits, writes    uint64 // synced commits; writes, which concurrent runs share commits for
	slack              int64
	authentik, oidcAPI int // authentik API calls; authentik's public OIDC URLs
	cloudflare         int
}

func (e *benchEnv) counters() benchCounters {
	akAll := e.ak.Calls("", "")
	akAPI := e.ak.Calls("", "/api/v3/")
	return benchCounters{
		commits:    e.app.store.Commits(),
		writes:     e.app.store.Writes(),
		slack:      e.slackCalls.Load(),
		authentik:  akAPI,
		oidcAPI:    akAll - akAPI,
		cloudflare: e.cf.Calls("", ""),
	}
}

func (c benchCounters) sub(o benchCounters) benchCounters {
	return benchCounters{
		commits:    c.commits - o.commits,
		writes:     c.writes - o.writes,
		slack:      c.slack - o.slack,
		authentik:  c.authentik - o.authentik,
		oidcAPI:    c.oidcAPI - o.oidcAPI,
		cloudflare: c.cloudflare - o.cloudflare,
	}
}

// settle waits until ssobot is idle: no run is pending or running and no
// commit or call to a fake happened for quiet. Background work (Slack
// delivery, replies to clicks) would otherwise leak into the next figure.
// It polls: the work it waits for has no single completion signal.
func (e *benchEnv) settle(ctx context.Context, quiet time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	last, since := e.activity(), time.Now()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return fmt.Errorf("ssobot did not settle: %w", ctx.Err())
		}
		now := e.activity()
		if now != last {
			last, since = now, time.Now()
			continue
		}
		if time.Since(since) < quiet {
			continue
		}
		counts, err := e.app.store.CountByState(ctx)
		if err != nil {
			return err
		}
		if counts[workflow.StatePending]+counts[workflow.StateRunning] == 0 {
			return nil
		}
	}
}

// activity is a number that moves whenever ssobot does something: cheap
// enough to poll while it works (counters scans every call the fakes saw).
func (e *benchEnv) activity() uint64 {
	return e.app.store.Writes() + uint64(e.slackCalls.Load()) + uint64(e.ak.CallCount()) + uint64(e.cf.CallCount())
}

// Close stops serving as on SIGTERM and releases everything.
func (e *benchEnv) Close() error {
	var errs []error
	if e.stopServe != nil {
		e.stopServe()
		if err := <-e.served; err != nil {
			errs = append(errs, fmt.Errorf("serve: %w", err))
		}
	}
	e.approvals.Wait()
	if e.app != nil {
		if err := e.app.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	e.ak.Close()
	e.cf.Close()
	e.sl.Close()
	if e.stopFeed != nil {
		e.stopFeed()
		<-e.feedDone
	}
	if e.dir != "" {
		os.RemoveAll(e.dir)
	}
	return errors.Join(errs...)
}

// newBenchClient is an HTTP client keeping up to conns connections to one
// host, so concurrent senders reuse theirs as Slack's do.
func newBenchClient(conns int) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = conns + 16
	t.MaxIdleConnsPerHost = conns + 16
	t.DisableCompression = true
	return &http.Client{Transport: t, Timeout: 30 * time.Second}
}

// benchStore is the bbolt store, noting which events each commit of the
// engine wrote, so a run's commits can be listed one by one.
type benchStore struct {
	*store.Store
	record  bool // false: a store like serve's, recording nothing
	mu      sync.Mutex
	commits map[int64][]string
}

var _ workflow.Store = (*benchStore)(nil)

func (s *benchStore) noteCommit(id int64, op string, events []workflow.Event) {
	var types, steps []string
	for _, ev := range events {
		types = append(types, string(ev.Type))
		if ev.Step != "" && !slices.Contains(steps, string(ev.Step)) {
			steps = append(steps, string(ev.Step))
		}
	}
	what := op
	if len(types) > 0 {
		what += ": " + strings.Join(types, ", ")
	}
	if len(steps) > 0 {
		what += " [" + strings.Join(steps, ", ") + "]"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.commits == nil {
		s.commits = map[int64][]string{}
	}
	s.commits[id] = append(s.commits[id], what)
}

// Commits lists what each commit for the run wrote, in order.
func (s *benchStore) Commits(id int64) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.commits[id]...)
}

func (s *benchStore) CreateRun(ctx context.Context, r *workflow.Run, events ...workflow.Event) error {
	if !s.record {
		return s.Store.CreateRun(ctx, r, events...)
	}
	if err := s.Store.CreateRun(ctx, r, events...); err != nil {
		return err
	}
	s.noteCommit(r.ID, "create run", events)
	return nil
}

func (s *benchStore) UpdateRun(ctx context.Context, id int64, fn func(r *workflow.Run) ([]workflow.Event, error)) (*workflow.Run, error) {
	if !s.record {
		return s.Store.UpdateRun(ctx, id, fn)
	}
	var events []workflow.Event
	var changed []string
	r, err := s.Store.UpdateRun(ctx, id, func(r *workflow.Run) ([]workflow.Event, error) {
		ref, delivered := r.MessageRef, r.Delivered
		evs, err := fn(r)
		events, changed = evs, nil
		if r.MessageRef != ref {
			changed = append(changed, "message ref")
		}
		if r.Delivered != delivered {
			changed = append(changed, "delivered")
		}
		return evs, err
	})
	if err != nil {
		return nil, err
	}
	op := "update run"
	if len(events) == 0 && len(changed) > 0 {
		op += ": " + strings.Join(changed, ", ")
	}
	s.noteCommit(id, op, events)
	return r, nil
}

func (s *benchStore) AppendEvents(ctx context.Context, id int64, events ...workflow.Event) error {
	if !s.record {
		return s.Store.AppendEvents(ctx, id, events...)
	}
	if err := s.Store.AppendEvents(ctx, id, events...); err != nil {
		return err
	}
	s.noteCommit(id, "append events", events)
	return nil
}

// benchLogs is a slog handler that keeps only what went wrong: warnings
// are counted, errors kept (the first few) for the report.
type benchLogs struct {
	mu        sync.Mutex
	warns     int
	firstWarn []string
	errors    []string
	count     int
}

func (l *benchLogs) Enabled(_ context.Context, lv slog.Level) bool { return lv >= slog.LevelWarn }

func (l *benchLogs) Handle(_ context.Context, r slog.Record) error {
	msg := r.Message
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == workflow.KeyError || a.Key == "err" {
			msg += ": " + a.Value.String()
		}
		return true
	})
	if r.Level < slog.LevelError {
		l.mu.Lock()
		l.warns++
		if len(l.firstWarn) < 3 {
			l.firstWarn = append(l.firstWarn, msg)
		}
		l.mu.Unlock()
		return nil
	}
	l.add(msg)
	return nil
}

func (l *benchLogs) add(msg string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.count++
	if len(l.errors) < 5 {
		l.errors = append(l.errors, msg)
	}
}

func (l *benchLogs) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *benchLogs) WithGroup(string) slog.Handler      { return l }

// report notes the errors ssobot logged, which void a measurement.
func (l *benchLogs) report(s *benchSection, where string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.count > 0 {
		s.note("%s: ssobot logged %d error(s), e.g. %s", where, l.count, strings.Join(l.errors, "; "))
	}
	if l.warns > 0 {
		s.note("%s: ssobot logged %d warning(s), e.g. %s", where, l.warns, strings.Join(l.firstWarn, "; "))
	}
}
