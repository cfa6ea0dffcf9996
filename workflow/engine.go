package workflow

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// SystemActor decides what no person decided: cancellations by the front end
// itself (e.g. its message could not be posted). It skips eligibility checks,
// so front ends must never pass a user-supplied ID as this.
const SystemActor = "ssobot"

// Defaults are the parameters a request may leave out.
type Defaults struct {
	// AuthentikURL is authentik's public https URL; the OIDC URLs handed to
	// Cloudflare are built from it.
	AuthentikURL      string
	AuthorizationFlow string // slug; default "default-provider-authorization-explicit-consent"
	InvalidationFlow  string // slug; default "default-provider-invalidation-flow"
	SigningKey        string // certificate name; default "authentik Self-signed Certificate"
	LoginMethodName   string // default "authentik": the login method is "<this> (<application name>)" unless the request names one
}

// Default values of Defaults.
const (
	DefaultAuthorizationFlow = "default-provider-authorization-explicit-consent"
	DefaultInvalidationFlow  = "default-provider-invalidation-flow"
	DefaultSigningKey        = "authentik Self-signed Certificate"
	DefaultLoginMethodName   = "authentik"
)

// RetryPolicy bounds the retries of transient failures.
type RetryPolicy struct {
	MaxAttempts int           // per step before it fails; default 8
	Base        time.Duration // first backoff; default 1s
	Max         time.Duration // cap of one computed backoff; default 5m (a Retry-After is honoured up to MaxRetryAfter)
}

// Defaults of RetryPolicy's Base and Max.
const (
	defaultRetryBase = time.Second
	defaultRetryMax  = 5 * time.Minute
)

// Backoff is the wait before attempt n+1 after n failed attempts:
// exponential with equal jitter, never less than what the API asked for
// up to MaxRetryAfter (a negative ask counts as none). A count below 1 counts as 1, and a non-positive Base or Max as its
// default, so that no policy makes it panic or wait a negative time.
func (p RetryPolicy) Backoff(failed int, retryAfter time.Duration) time.Duration {
	base, ceiling := p.Base, p.Max
	if base <= 0 {
		base = defaultRetryBase
	}
	if ceiling <= 0 {
		ceiling = defaultRetryMax
	}
	shift := min(max(failed, 1)-1, 62)
	d := ceiling
	if base <= ceiling>>shift { // base<<shift neither overflows nor passes the cap
		d = base << shift
	}
	d = d/2 + rand.N(d/2+1)
	return max(d, min(retryAfter, MaxRetryAfter))
}

// CrashPoint names a moment between the intent and the result of a step.
type CrashPoint string

const (
	CrashAfterIntent CrashPoint = "after-intent" // intent stored, call not made
	CrashAfterCall   CrashPoint = "after-call"   // call made, result not stored
	CrashAfterResult CrashPoint = "after-result" // result stored, next step not started
)

// CrashPoints lists every crash point in order.
var CrashPoints = []CrashPoint{CrashAfterIntent, CrashAfterCall, CrashAfterResult}

// Config wires an engine. Store, Authentik, Access, Endpoints and Approvers
// are required.
type Config struct {
	Store     Store
	Authentik Authentik
	Access    Access
	Endpoints Endpoints
	Approvers Approvers
	Notifier  Notifier // optional
	Observer  Observer // optional
	Clock     Clock    // default: the system clock
	Logger    *slog.Logger

	Defaults          Defaults
	ApprovalsRequired int           // per gate; default 1
	AllowSelfApproval bool          // the requester may approve their own run
	ApprovalTTL       time.Duration // a gate's deadline; default 24h
	// ApprovalReminder is how long before a gate's deadline its approvers
	// are reminded, once, if the gate is still open; 0 (or not shorter
	// than ApprovalTTL) sets no reminder and clears those set when gates
	// opened under an earlier configuration.
	ApprovalReminder time.Duration
	Retry            RetryPolicy
	// AttemptTimeout bounds one attempt of a step (all its API calls); default 60s.
	AttemptTimeout time.Duration
	// UnansweredCreateWait is the least wait before the next attempt after
	// a create of a login method that may have been made all the same (a
	// transient failure but a 429: no answer, a garbled one, a 5xx): the
	// server may still apply it, and a list made sooner would miss it and
	// create a second one. Set it to the Cloudflare client's HTTP timeout;
	// default 30s.
	UnansweredCreateWait time.Duration
	// MaxConcurrentRuns bounds runs executing steps at once; default 16.
	MaxConcurrentRuns int

	// Yield, when set, is called before the engine reads and advances a run
	// in the background, and may make it wait: a front end that must answer
	// people within a deadline (bot.Foreground) lets its requests go first.
	// done is called at once; an error (ctx done) skips the advance.
	Yield func(ctx context.Context) (done func(), err error)

	// CrashHook, for tests: returning true at a point makes the engine stop
	// driving the run at once, writing nothing more, as if the process died.
	CrashHook func(point CrashPoint, step StepName) bool
}

// DecisionRequest is a person's approve or reject of a gate.
type DecisionRequest struct {
	RunID    int64
	Gate     StepName
	Nonce    string // the gate's callback token, from the button
	User     string
	Decision Decision
	Reason   string
	// MessageRef is the front end's reference to the message that was
	// clicked, when known: a click on another run's message is refused.
	MessageRef string
}

// Engine drives runs from request to end. Its methods are safe for concurrent use.
type Engine struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	running bool
	ctx     context.Context // Run's context; drivers stop between attempts when it ends
	driving map[int64]bool  // runs with a driver goroutine (or one about to start: see launch)
	again   map[int64]bool  // runs changed while being driven
	// launch holds the runs kicked while the front end may be busy, whose
	// drivers start once it lets background work go (see kick); launching
	// is whether a goroutine waits for that.
	launch    []int64
	launching bool
	crashed   map[int64]bool   // runs a CrashHook stopped: left alone, as by a dead process
	wakers    map[int64]func() // cancel each run's pending wake-up
	// fresh holds, per run, the attempt whose intent this process wrote
	// into the commit that ended the step or gate before it, and whose call
	// it has not made yet: the driver makes that call without writing the
	// intent again. After a restart the map is empty, and an attempt found
	// running is treated as interrupted, as always.
	fresh map[int64]intent
	// settleTries counts, per finished run being settled, the look-ups
	// that failed transiently (settle).
	settleTries map[int64]int
	wg          sync.WaitGroup
	sem         chan struct{}

	// gateAhead holds, per run, the nonce of the open gate found opened
	// later than the clock reads, so that this is logged once (warnGateAhead).
	gateAhead map[int64]string

	// order makes each run's notifications follow its commits: two updates
	// of one run (the driver's and a person's cancel) could otherwise commit
	// v6 then v7 and notify v7 first, and the front end would skip v6's
	// events or show v6 over v7. Striped by run ID.
	order [64]sync.Mutex
	// births holds the runs Start is creating until it has notified their
	// creation: their IDs are not known before the store assigns them, so
	// their stripe of order cannot be held, and a change committed meanwhile
	// (a cancel by the run's ID) waits for them before it notifies.
	births births
}

// intent names an attempt recorded before its call.
type intent struct {
	step    StepName
	attempt int
}

type systemClock struct{}

func (systemClock) Now() time.Time                         { return time.Now() }
func (systemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// AfterFunc calls f in its own goroutine after d; stop cancels it.
func (systemClock) AfterFunc(d time.Duration, f func()) (stop func() bool) {
	return time.AfterFunc(d, f).Stop
}

// afterFuncClock is a Clock that can call a function after a duration
// without a goroutine waiting for it meanwhile.
type afterFuncClock interface {
	AfterFunc(d time.Duration, f func()) (stop func() bool)
}

func newEngine(cfg Config) (*Engine, error) {
	var missing []string
	if cfg.Store == nil {
		missing = append(missing, "Store")
	}
	if cfg.Authentik == nil {
		missing = append(missing, "Authentik")
	}
	if cfg.Access == nil {
		missing = append(missing, "Access")
	}
	if cfg.Endpoints == nil {
		missing = append(missing, "Endpoints")
	}
	if cfg.Approvers == nil {
		missing = append(missing, "Approvers")
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("new engine: missing %v", missing)
	}
	if cfg.Defaults.AuthentikURL == "" {
		return nil, errors.New("new engine: missing Defaults.AuthentikURL")
	}
	d := &cfg.Defaults
	d.AuthentikURL = trimSlash(d.AuthentikURL)
	setDefault(&d.AuthorizationFlow, DefaultAuthorizationFlow)
	setDefault(&d.InvalidationFlow, DefaultInvalidationFlow)
	setDefault(&d.SigningKey, DefaultSigningKey)
	setDefault(&d.LoginMethodName, DefaultLoginMethodName)
	setDefault(&cfg.ApprovalsRequired, 1)
	setDefault(&cfg.ApprovalTTL, 24*time.Hour)
	setDefault(&cfg.Retry.MaxAttempts, 8)
	setDefault(&cfg.Retry.Base, defaultRetryBase)
	setDefault(&cfg.Retry.Max, defaultRetryMax)
	setDefault(&cfg.AttemptTimeout, 60*time.Second)
	setDefault(&cfg.UnansweredCreateWait, 30*time.Second)
	setDefault(&cfg.MaxConcurrentRuns, 16)
	if cfg.Clock == nil {
		cfg.Clock = systemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Engine{
		cfg:         cfg,
		log:         cfg.Logger,
		driving:     map[int64]bool{},
		again:       map[int64]bool{},
		crashed:     map[int64]bool{},
		wakers:      map[int64]func(){},
		fresh:       map[int64]intent{},
		settleTries: map[int64]int{},
		gateAhead:   map[int64]string{},
		sem:         make(chan struct{}, cfg.MaxConcurrentRuns),
	}, nil
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// OpenStates are the states in which the engine still has work or waits.
var OpenStates = []State{StatePending, StateAwaitingApproval, StateRunning}

func (e *Engine) run(ctx context.Context) error {
	e.mu.Lock()
	if e.running {
		e.mu.Unlock()
		return errors.New("engine already running")
	}
	e.running, e.ctx = true, ctx
	e.mu.Unlock()

	open, err := e.cfg.Store.ListRuns(ctx, ListOptions{States: OpenStates})
	if err != nil {
		e.stop()
		if ctx.Err() != nil {
			return nil // stopped before it started: nothing to resume yet
		}
		return fmt.Errorf("resume open runs: %w", err)
	}
	for _, r := range open {
		e.kick(r.ID)
		e.log.Info("resuming run", slog.Int64(KeyRunID, r.ID), slog.String(KeyState, string(r.State)))
	}
	e.resumeUnsettled(ctx)
	<-ctx.Done()
	e.stop()
	return nil
}

// stop ends the engine: wakers are cancelled and drivers finish the attempt
// they are in, recording its result.
func (e *Engine) stop() {
	e.mu.Lock()
	e.running = false
	for id, cancel := range e.wakers {
		cancel()
		delete(e.wakers, id)
	}
	e.mu.Unlock()
	e.wg.Wait()
}

func (e *Engine) isReady() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.running && e.ctx.Err() == nil
}

// kick makes sure a driver looks at the run soon.
func (e *Engine) kick(id int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.running || e.ctx.Err() != nil {
		return // Run picks open runs up when it starts
	}
	if e.crashed[id] {
		return
	}
	if e.driving[id] {
		e.again[id] = true
		return
	}
	e.driving[id] = true
	e.wg.Add(1)
	if e.cfg.Yield == nil {
		go e.drive(e.ctx, id)
		return
	}
	// Every driver first waits for the front end (yield). During a burst
	// of commands, each starting a run, that was a goroutine per run
	// waiting (about 1,000 in a round of the benchmark), whose stacks every
	// collection scanned while the acknowledgements waited; one goroutine
	// now waits for all of them, then starts their drivers. In three A/B
	// pairs of 1,000 `new` from 50 senders: p99 13.4–15.8 -> 8.8–13.3 ms,
	// slowest 22–25 -> 12–17 ms.
	e.launch = append(e.launch, id)
	if !e.launching {
		e.launching = true
		go e.launchDrivers()
	}
}

// launchDrivers starts the drivers of the runs in e.launch once the front
// end lets background work go, until none is left. Each was counted in
// e.wg by kick. The drivers get the engine's context as it is when they
// are taken from e.launch: a run queued by a later Run of the engine, while
// this goroutine was still finishing, is driven under that Run.
func (e *Engine) launchDrivers() {
	for {
		e.mu.Lock()
		ctx := e.ctx
		e.mu.Unlock()
		_ = e.yield(ctx) // an error means ctx is done: the drivers see it too
		e.mu.Lock()
		ids, ctx := e.launch, e.ctx
		e.launch = nil
		if len(ids) == 0 {
			e.launching = false
			e.mu.Unlock()
			return
		}
		e.mu.Unlock()
		for _, id := range ids {
			go e.drive(ctx, id)
		}
	}
}

func (e *Engine) drive(ctx context.Context, id int64) {
	defer e.wg.Done()
	for {
		crashed := false
		if e.yield(ctx) == nil {
			crashed = e.advance(ctx, id)
		}
		e.mu.Lock()
		if e.again[id] && !crashed && ctx.Err() == nil {
			delete(e.again, id)
			e.mu.Unlock()
			continue
		}
		delete(e.again, id)
		delete(e.driving, id)
		if crashed {
			e.crashed[id] = true
		}
		e.mu.Unlock()
		return
	}
}

// yield waits, when the front end asks, before background work on a run.
func (e *Engine) yield(ctx context.Context) error {
	if e.cfg.Yield == nil {
		return nil
	}
	done, err := e.cfg.Yield(ctx)
	if err != nil {
		return err
	}
	done()
	return nil
}

// cancelWake drops the run's pending wake-up: it is moving on, or done.
func (e *Engine) cancelWake(id int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if cancel := e.wakers[id]; cancel != nil {
		cancel()
		delete(e.wakers, id)
	}
}

// wakeAt kicks the run at time t on the engine's clock, replacing an earlier wake.
func (e *Engine) wakeAt(id int64, t time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.running {
		return
	}
	if cancel := e.wakers[id]; cancel != nil {
		cancel()
	}
	d := t.Sub(e.cfg.Clock.Now())
	if af, ok := e.cfg.Clock.(afterFuncClock); ok {
		// No goroutine per waiting run (a run waits at a gate for up to a day).
		stop := af.AfterFunc(d, func() { e.kick(id) })
		e.wakers[id] = func() { stop() }
		return
	}
	ctx, cancel := context.WithCancel(e.ctx)
	e.wakers[id] = cancel
	wait := e.cfg.Clock.After(d)
	go func() {
		select {
		case <-wait:
			e.kick(id)
		case <-ctx.Done():
		}
	}()
}

// advance moves the run as far as it can go now. It reports whether a crash
// was simulated.
func (e *Engine) advance(ctx context.Context, id int64) (crashed bool) {
	for ctx.Err() == nil {
		r, err := e.cfg.Store.GetRun(ctx, id)
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, ErrNotFound) {
				e.log.Error("load run", slog.Int64(KeyRunID, id), slog.Any(KeyError, err))
				e.wakeAt(id, e.cfg.Clock.Now().Add(storeRetryDelay))
			}
			return false
		}
		if r.State.Terminal() {
			e.cancelWake(id)
			e.forgetGateAhead(id)
			if in := e.takeFresh(id); in.attempt != 0 {
				e.abandonIntent(ctx, id, in)
			} else if s := r.RunningStep(); s != nil && s.Kind == KindAction {
				// This run's calls are made by its one driver, this one,
				// and none is in flight: the process that made the call
				// stopped before storing its result (or could not store
				// it).
				e.settle(ctx, r, s.Name)
			}
			return false
		}
		step := r.Current()
		if step == nil {
			return false // every step done but not terminal: cannot happen by the table
		}
		now := e.cfg.Clock.Now()
		switch {
		case r.State == StateAwaitingApproval:
			e.warnGateAhead(id, step, now)
			var act func(context.Context, int64, StepName, string) error
			var what string
			switch remind := !step.RemindAt.IsZero(); {
			case !now.Before(step.Deadline):
				act, what = e.expire, "expire gate"
			case remind && !e.remindersOn():
				// Reminders were turned off since the gate opened: clear
				// its reminder, so that no view shows one still due.
				act, what = e.dropReminder, "drop reminder"
			case remind && now.Before(step.RemindAt):
				e.wakeAt(id, step.RemindAt)
				return false
			case remind:
				act, what = e.remind, "remind approvers"
			default:
				e.wakeAt(id, step.Deadline)
				return false
			}
			if err := act(ctx, id, step.Name, step.Nonce); err != nil {
				if ctx.Err() == nil {
					e.log.Error(what, slog.Int64(KeyRunID, id), slog.Any(KeyError, err))
					e.wakeAt(id, now.Add(storeRetryDelay))
				}
				return false
			}
			continue
		case step.Kind == KindGate:
			if err := e.openGate(ctx, id, step.Name); err != nil {
				e.log.Error("open gate", slog.Int64(KeyRunID, id), slog.String(KeyStep, string(step.Name)), slog.Any(KeyError, err))
				e.wakeAt(id, now.Add(storeRetryDelay))
				return false
			}
			continue
		case step.NextAttemptAt.Sub(now) > e.longestBackoff():
			if err := e.pullInAttempt(ctx, id, step.Name, step.NextAttemptAt); err != nil {
				if ctx.Err() == nil {
					e.log.Error("move next attempt", slog.Int64(KeyRunID, id), slog.String(KeyStep, string(step.Name)), slog.Any(KeyError, err))
					e.wakeAt(id, now.Add(storeRetryDelay))
				}
				return false
			}
			continue
		case step.NextAttemptAt.After(now):
			e.wakeAt(id, step.NextAttemptAt)
			return false
		}
		e.cancelWake(id)
		select {
		case e.sem <- struct{}{}:
		case <-ctx.Done():
			return false
		}
		// The wait for a slot lasts as long as other runs' calls, and the run
		// may have been cancelled meanwhile. An intent folded into the commit
		// that opened the step (foldIntent) is not checked again before the
		// call, so the run is read again now that the slot is held.
		if r, err = e.cfg.Store.GetRun(ctx, id); err != nil || r.State.Terminal() || r.Current() == nil || r.Current().Name != step.Name {
			<-e.sem
			continue
		}
		crashed, err = e.attempt(ctx, r, step.Name, e.takeFresh(id))
		<-e.sem
		if crashed {
			return true
		}
		if err != nil {
			if ctx.Err() == nil {
				e.log.Error("attempt", slog.Int64(KeyRunID, id), slog.String(KeyStep, string(step.Name)), slog.Any(KeyError, err))
				e.wakeAt(id, e.cfg.Clock.Now().Add(storeRetryDelay))
			}
			return false
		}
	}
	return false
}

// longestBackoff is the longest wait the engine sets before a step's next
// attempt: RetryPolicy.Backoff's under this engine's policy (Retry.Max is
// set by then), or UnansweredCreateWait after an unanswered create. A
// wait within it is never pulled in, so a create the server applies late
// is seen before the next list.
func (e *Engine) longestBackoff() time.Duration {
	return max(e.cfg.Retry.Max, MaxRetryAfter, e.cfg.UnansweredCreateWait)
}

// pullInAttempt moves a step's next attempt, due further ahead than any
// backoff, to the longest backoff from now. It was set while the clock ran
// ahead of where it is now (set back since, by NTP say), or under a longer
// retry policy: left as it is, the run would wait as long as the clock
// moved, weeks maybe. Not now but the longest backoff from now: the
// attempt is then at least as late as the API may have asked, whichever
// clock was right. was is the time the driver read, so that a step that
// moved on meanwhile is left alone.
func (e *Engine) pullInAttempt(ctx context.Context, id int64, name StepName, was time.Time) error {
	longest := e.longestBackoff()
	var at time.Time
	_, err := e.update(ctx, id, func(r *Run) ([]Event, error) {
		s := r.Step(name)
		if r.State.Terminal() || r.Current() != s || !s.NextAttemptAt.Equal(was) {
			return nil, errStale
		}
		at = e.cfg.Clock.Now().UTC().Add(longest)
		if !s.NextAttemptAt.After(at) {
			return nil, errStale
		}
		s.NextAttemptAt = at
		return []Event{{Type: EventNote, Step: name,
			Message: fmt.Sprintf("the next attempt of %s was set for %s, further ahead than the longest backoff (%s): the clock was set back since, or the retry policy shortened; it is made at %s instead",
				name, was.UTC().Format(time.RFC3339), longest, at.Format(time.RFC3339)),
			Data: map[string]string{"retry_at": at.Format(time.RFC3339)}}}, nil
	})
	if errors.Is(err, errStale) {
		return nil
	}
	if err != nil {
		return err
	}
	// Once: the stored time is now within the longest backoff.
	e.log.Warn("next attempt was set further ahead than the longest backoff: the clock was set back since (or the retry policy shortened); moved in",
		slog.Int64(KeyRunID, id), slog.String(KeyStep, string(name)), slog.Time("next_attempt_at", was), slog.Time("moved_to", at), slog.Duration("longest_backoff", longest))
	return nil
}

// warnGateAhead logs, once per gate, an open gate that opened later than
// now by the clock: the clock was set back since, and the gate waits that
// much longer than the TTL it opened with. Its deadline is kept all the
// same. Moving it to the TTL from now would move it earlier than the time
// shown on the card, and should the clock be set forward again it would
// expire the gate at once; by the configured TTL, a TTL lowered since
// would cut short a deadline already given. A gate left open longer runs
// nothing, and can still be rejected or the run cancelled.
func (e *Engine) warnGateAhead(id int64, s *Step, now time.Time) {
	if !s.StartedAt.After(now) {
		return
	}
	e.mu.Lock()
	warned := e.gateAhead[id] == s.Nonce
	e.gateAhead[id] = s.Nonce
	e.mu.Unlock()
	if warned {
		return
	}
	e.log.Warn("open gate opened later than the clock reads: the clock was set back since, and the gate waits that much longer than its TTL; its deadline is kept",
		slog.Int64(KeyRunID, id), slog.String(KeyStep, string(s.Name)), slog.Time("opened_at", s.StartedAt), slog.Time("deadline", s.Deadline), slog.Time("now", now))
}

// forgetGateAhead drops what warnGateAhead remembers of a finished run.
func (e *Engine) forgetGateAhead(id int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.gateAhead, id)
}

// storeRetryDelay is how long a run waits after its own record could not be
// read or written, before the engine tries again.
const storeRetryDelay = 5 * time.Second

func (e *Engine) crash(p CrashPoint, step StepName) bool {
	return e.cfg.CrashHook != nil && e.cfg.CrashHook(p, step)
}

// update is Store.UpdateRun plus what follows every change: the updated
// time, the line that says a run ended, and the notifier.
func (e *Engine) update(ctx context.Context, id int64, fn func(r *Run) ([]Event, error)) (*Run, error) {
	return e.commit(ctx, id, fn, nil)
}

// commit is update with committed, when set, called with the run once fn's
// change is committed: a log line about the change goes there, never into
// fn, which the store may call and then not commit.
func (e *Engine) commit(ctx context.Context, id int64, fn func(r *Run) ([]Event, error), committed func(r *Run)) (*Run, error) {
	mu := &e.order[uint64(id)%uint64(len(e.order))]
	mu.Lock()
	defer mu.Unlock()
	var events []Event
	var from State
	r, err := e.cfg.Store.UpdateRun(ctx, id, func(r *Run) ([]Event, error) {
		from = r.State
		evs, err := fn(r)
		if err != nil {
			return nil, err
		}
		now := e.cfg.Clock.Now().UTC()
		r.UpdatedAt = now
		for i := range evs {
			if evs[i].At.IsZero() {
				evs[i].At = now
			}
		}
		events = evs
		return evs, nil
	})
	if err != nil {
		return nil, err
	}
	if committed != nil {
		committed(r)
	}
	// Of the writers racing to end a run (driver, cancel, decision) only the
	// one whose compare-and-set committed the change saw it open: the end is
	// logged once. Before the notifier, so the line precedes what follows.
	if !from.Terminal() && r.State.Terminal() {
		e.logFinished(r)
	}
	e.births.await(r.ID)
	e.notify(ctx, r, events)
	return r, nil
}

// logFinished writes the line that says run r ended. A run that did not do
// what was asked and that nobody withdrew (failed, rejected, expired) is a
// warning: someone has to act on it, or see why it was refused; one that
// succeeded or was cancelled is not.
func (e *Engine) logFinished(r *Run) {
	level := slog.LevelWarn
	if r.State == StateSucceeded || r.State == StateCancelled {
		level = slog.LevelInfo
	}
	attrs := make([]slog.Attr, 0, 5)
	attrs = append(attrs, slog.Int64(KeyRunID, r.ID), slog.String(KeyState, string(r.State)))
	if s := r.Current(); s != nil {
		attrs = append(attrs, slog.String(KeyStep, string(s.Name)))
	}
	// UpdatedAt is the commit's time: no clock read, and the same figure
	// the run's record shows.
	attrs = append(attrs, slog.Duration(KeyDuration, r.UpdatedAt.Sub(r.CreatedAt)))
	if r.Error != "" {
		// Run.Error is built from API errors and people's reasons, which
		// never hold a secret (APIError); it is shown in Slack as well.
		attrs = append(attrs, slog.String(KeyError, r.Error))
	}
	e.log.LogAttrs(context.Background(), level, "run finished", attrs...)
}

// births tracks runs being created, from before CreateRun until their
// creation is notified.
type births struct {
	n       atomic.Int64 // len(pending): no lock taken while nothing is created
	mu      sync.Mutex
	changed sync.Cond // L is &mu
	seq     uint64
	pending map[*birth]struct{}
}

// birth is one run being created; id is 0 until the store assigned it.
type birth struct {
	seq uint64
	id  int64
}

// begin registers a creation about to be stored.
func (b *births) begin() *birth {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.pending == nil {
		b.pending = map[*birth]struct{}{}
		b.changed.L = &b.mu
	}
	b.seq++
	n := &birth{seq: b.seq}
	b.pending[n] = struct{}{}
	b.n.Add(1)
	return n
}

// stored records the ID the store gave the run (0: it was not stored).
func (b *births) stored(n *birth, id int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n.id = id
	b.changed.Broadcast()
}

// end forgets a creation once notified (or failed).
func (b *births) end(n *birth) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.pending[n]; ok {
		delete(b.pending, n)
		b.n.Add(-1)
	}
	b.changed.Broadcast()
}

// await returns once run id's creation, if this process is making it, has
// been notified. The caller has committed a change of the run, so the run
// was stored before: only creations begun by now can be it, and those whose
// ID is still unknown are waited for until it is (one commit at most).
func (b *births) await(id int64) {
	if b.n.Load() == 0 {
		// The run's own creation, if any, was begun before its commit,
		// which the caller's commit followed.
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	upTo := b.seq
	for b.mayBe(id, upTo) {
		b.changed.Wait()
	}
}

func (b *births) mayBe(id int64, upTo uint64) bool {
	for n := range b.pending {
		if n.seq <= upTo && (n.id == 0 || n.id == id) {
			return true
		}
	}
	return false
}

func (e *Engine) notify(ctx context.Context, r *Run, events []Event) {
	if e.cfg.Notifier != nil {
		e.cfg.Notifier.RunChanged(context.WithoutCancel(ctx), r.Clone(), events)
	}
	if e.cfg.Observer != nil {
		for _, ev := range events {
			switch ev.Type {
			case EventSucceeded, EventFailed, EventGateRejected, EventGateExpired, EventCancelled:
				e.cfg.Observer.RunFinished(r.State)
			}
		}
	}
}

// attempt runs one attempt of an action step: intent, call, result.
func (e *Engine) attempt(ctx context.Context, r *Run, name StepName, pre intent) (crashed bool, err error) {
	var attemptNo int
	if s := r.Step(name); pre.step == name && pre.attempt == s.Attempts && s.Status == StepRunning && s.NextAttemptAt.IsZero() {
		// The intent went into the commit that ended the previous step or
		// gate, and no call has been made for it.
		attemptNo = pre.attempt
	} else {
		gaveUp := false
		r, err = e.update(ctx, r.ID, func(r *Run) ([]Event, error) {
			evs, n, gave, err := e.beginAttempt(r, name)
			attemptNo, gaveUp = n, gave
			return evs, err
		})
		if errors.Is(err, errStale) || gaveUp {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("record intent: %w", err)
		}
	}
	if e.crash(CrashAfterIntent, name) {
		return true, nil
	}

	// The call outlives a shutdown so its result gets recorded.
	callCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.cfg.AttemptTimeout)
	start := e.cfg.Clock.Now()
	out, callErr := e.perform(callCtx, r, name)
	cancel()
	elapsed := e.cfg.Clock.Now().Sub(start)
	if e.cfg.Observer != nil {
		e.cfg.Observer.StepFinished(name, elapsed, callErr)
	}
	if e.crash(CrashAfterCall, name) {
		return true, nil
	}

	var next intent
	_, err = e.commit(context.WithoutCancel(ctx), r.ID, func(r *Run) ([]Event, error) {
		evs, err := e.recordResult(r, name, attemptNo, out, callErr)
		if err != nil {
			return nil, err
		}
		more, n := e.foldIntent(r)
		next = n
		return append(evs, more...), nil
	}, func(r *Run) { e.logAttempt(r, name, attemptNo, elapsed, out.problems, callErr) })
	if errors.Is(err, errStale) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("record result: %w", err)
	}
	e.setFresh(r.ID, next)
	if e.crash(CrashAfterResult, name) {
		return true, nil
	}
	return false, nil
}

// logAttempt writes the line of an attempt whose result r has committed,
// with its outcome as the step's status now says: succeeded, retrying (a
// next attempt is due), failed (the step failed, and so the run), or
// cancelled (the run ended while the call was in flight). A failed call or
// a preflight that found problems is a warning, with the error or the
// problems: the error is an API's answer, which holds no secret (APIError).
func (e *Engine) logAttempt(r *Run, name StepName, attemptNo int, elapsed time.Duration, problems []string, callErr error) {
	s := r.Step(name)
	outcome := string(s.Status)
	if s.Status == StepRunning {
		outcome = "retrying"
	}
	attrs := make([]slog.Attr, 0, 9)
	attrs = append(attrs, slog.Int64(KeyRunID, r.ID), slog.String(KeyStep, string(name)), slog.Int(KeyAttempt, attemptNo),
		slog.String(KeyOutcome, outcome), slog.Duration(KeyDuration, elapsed))
	level := slog.LevelInfo
	if callErr != nil {
		level = slog.LevelWarn
		attrs = append(attrs, slog.Bool("transient", IsTransient(callErr)), slog.String(KeyError, callErr.Error()))
		if n := len(s.Errors); s.Status == StepRunning && n > 0 {
			attrs = append(attrs, slog.Duration("retry_in", s.NextAttemptAt.Sub(s.Errors[n-1].At)))
		}
	}
	if len(problems) > 0 {
		level = slog.LevelWarn
		attrs = append(attrs, slog.Int("problem_count", len(problems)), slog.String("problems", strings.Join(problems, "; ")))
	}
	e.log.LogAttrs(context.Background(), level, "step attempt finished", attrs...)
}

var errStale = errors.New("run moved on")

// lastErrorSince is the step's latest recorded error of an attempt after
// attempt since, or nil.
func lastErrorSince(s *Step, since int) *AttemptError {
	for i := len(s.Errors) - 1; i >= 0; i-- {
		if s.Errors[i].Attempt > since {
			return &s.Errors[i]
		}
	}
	return nil
}

// beginAttempt records the intent of the step's next attempt on r: the
// attempt is counted before the call, so a step that kills the process every
// time cannot loop forever across restarts. gaveUp reports that the budget of
// attempts is spent, and r failed instead.
func (e *Engine) beginAttempt(r *Run, name StepName) (evs []Event, attemptNo int, gaveUp bool, err error) {
	s := r.Step(name)
	if r.State.Terminal() || r.Current() != s || s.Kind != KindAction {
		return nil, 0, false, errStale
	}
	if s.Status == StepRunning && s.NextAttemptAt.IsZero() && s.Attempts-s.RetriedAtAttempt >= e.cfg.Retry.MaxAttempts {
		now := e.cfg.Clock.Now().UTC()
		s.Status, s.FinishedAt = StepFailed, now
		n := s.Attempts - s.RetriedAtAttempt
		why := fmt.Sprintf("%s failed: gave up after %d attempts that never finished (the process stopped during each)", name, n)
		// Only the last attempt is known to have been interrupted: what the
		// others failed with is the cause to show.
		if last := lastErrorSince(s, s.RetriedAtAttempt); last != nil {
			why = fmt.Sprintf("%s failed: gave up after %d attempts, the last interrupted (the process stopped during it); attempt %d: %s", name, n, last.Attempt, last.Error)
		}
		s.Errors = append(s.Errors, AttemptError{Attempt: s.Attempts, At: now, Error: why})
		r.Error = why
		return []Event{{Type: EventStepFailed, Step: name, Message: why}, {Type: EventFailed, Step: name, Message: why}}, 0, true, r.transition(StateFailed)
	}
	s.Attempts++
	s.Status = StepRunning
	s.NextAttemptAt = time.Time{}
	if s.StartedAt.IsZero() || s.Attempts == s.RetriedAtAttempt+1 {
		s.StartedAt = e.cfg.Clock.Now().UTC()
		evs = append(evs, Event{Type: EventStepStarted, Step: name, Message: fmt.Sprintf("%s started", name)})
	}
	evs = append(evs, Event{Type: EventStepIntent, Step: name, Message: intentMessage(r, name, s.Attempts),
		Data: map[string]string{"attempt": fmt.Sprint(s.Attempts)}})
	return evs, s.Attempts, false, nil
}

// foldIntent, inside the commit that ends a step or a gate, records the
// first attempt of the step that follows when it is an action that can start
// at once: one commit fewer before its call. The caller passes the returned
// intent to setFresh once the commit succeeded.
func (e *Engine) foldIntent(r *Run) ([]Event, intent) {
	if r.State != StateRunning {
		return nil, intent{}
	}
	next := r.Current()
	if next == nil || next.Kind != KindAction || next.Status != StepPending || !next.NextAttemptAt.IsZero() {
		return nil, intent{}
	}
	evs, n, gaveUp, err := e.beginAttempt(r, next.Name)
	if err != nil || gaveUp {
		return nil, intent{} // cannot happen for a pending step; the driver records it then
	}
	return evs, intent{step: next.Name, attempt: n}
}

// setFresh remembers an intent written for a call not yet made.
func (e *Engine) setFresh(id int64, in intent) {
	if in.attempt == 0 {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.fresh[id] = in
}

// takeFresh returns and forgets the run's fresh intent, if any.
func (e *Engine) takeFresh(id int64) intent {
	e.mu.Lock()
	defer e.mu.Unlock()
	in := e.fresh[id]
	delete(e.fresh, id)
	return in
}

// recordResult writes an attempt's outcome. Outputs (external IDs) are kept
// even when the run was cancelled meanwhile, so nothing created goes unrecorded.
func (e *Engine) recordResult(r *Run, name StepName, attemptNo int, out outcome, callErr error) ([]Event, error) {
	s := r.Step(name)
	if s.Attempts != attemptNo {
		return nil, errStale
	}
	now := e.cfg.Clock.Now().UTC()
	var evs []Event
	if out.apply != nil {
		out.apply(r)
	}
	evs = append(evs, out.events...)
	if r.State.Terminal() {
		// Cancelled while the call was in flight: keep what it created, and
		// what went wrong, and close the step.
		switch {
		case callErr != nil:
			s.Errors = append(s.Errors, AttemptError{Attempt: attemptNo, At: now, Error: callErr.Error(), Transient: IsTransient(callErr)})
			s.Status, s.FinishedAt = StepCancelled, now
			msg := fmt.Sprintf("attempt %d of %s failed after the run was %s: %v", attemptNo, name, r.State, callErr)
			if obj := createdBy(r, name); obj != "" && IsTransient(callErr) {
				// A call that failed this way (a timeout, say) may still
				// have created its object, and nobody will retry this run;
				// a refusal (403, 400) created nothing.
				msg += "; it may have created " + obj + " all the same, which ssobot does not delete"
			}
			evs = append(evs, Event{Type: EventNote, Step: name, Message: msg})
		case len(out.problems) > 0:
			s.Status, s.FinishedAt = StepCancelled, now
			r.Problems = out.problems
			evs = append(evs, Event{Type: EventNote, Step: name, Message: fmt.Sprintf("preflight found %d problem(s) after the run was %s", len(out.problems), r.State), Data: problemsData(out.problems)})
		default:
			s.Status, s.FinishedAt = StepSucceeded, now
			if createdBy(r, name) != "" && out.message != "" {
				// The reply that said the run ended could not list this.
				evs = append(evs, Event{Type: EventNote, Step: name, Data: out.data,
					Message: fmt.Sprintf("%s finished after the run was %s: %s; kept, since ssobot deletes nothing", name, r.State, out.message)})
			}
		}
		return evs, nil
	}
	if callErr != nil {
		transient := IsTransient(callErr)
		s.Errors = append(s.Errors, AttemptError{Attempt: attemptNo, At: now, Error: callErr.Error(), Transient: transient})
		budgetLeft := s.Attempts-s.RetriedAtAttempt < e.cfg.Retry.MaxAttempts
		if transient && budgetLeft {
			wait := e.cfg.Retry.Backoff(s.Attempts-s.RetriedAtAttempt, RetryAfter(callErr))
			var why string
			if out.createUnanswered && wait < e.cfg.UnansweredCreateWait {
				// The next attempt lists before it creates: not before the
				// server has had its time to apply the create it may hold.
				wait = e.cfg.UnansweredCreateWait
				why = " (not sooner: the server may still apply the create it did not answer)"
			}
			s.NextAttemptAt = now.Add(wait)
			evs = append(evs, Event{Type: EventAttemptFailed, Step: name,
				Message: fmt.Sprintf("attempt %d of %s failed, retrying in %s%s: %v", attemptNo, name, wait.Round(time.Second), why, callErr),
				Data:    map[string]string{"attempt": fmt.Sprint(attemptNo), "retry_at": s.NextAttemptAt.Format(time.RFC3339)}})
			return evs, nil
		}
		why := callErr.Error()
		if transient {
			why = fmt.Sprintf("gave up after %d attempts: %s", s.Attempts-s.RetriedAtAttempt, why)
			if obj := createdBy(r, name); obj != "" {
				// A call that failed this way (a timeout, say) may have
				// made its object: whoever gives the run up must know.
				why += "; the last attempt may have created " + obj + " all the same (a retry finds it)"
			}
		}
		s.Status, s.FinishedAt = StepFailed, now
		evs = append(evs, Event{Type: EventStepFailed, Step: name, Message: fmt.Sprintf("%s failed: %s", name, why)})
		if err := r.transition(StateFailed); err != nil {
			return nil, err
		}
		r.Error = fmt.Sprintf("%s failed: %s", name, why)
		evs = append(evs, Event{Type: EventFailed, Step: name, Message: r.Error})
		return evs, nil
	}
	if len(out.problems) > 0 {
		s.Status, s.FinishedAt = StepFailed, now
		r.Problems = out.problems
		r.Error = fmt.Sprintf("preflight found %d problem(s); nothing was created", len(out.problems))
		if err := r.transition(StateFailed); err != nil {
			return nil, err
		}
		evs = append(evs,
			Event{Type: EventStepFailed, Step: name, Message: r.Error, Data: problemsData(out.problems)},
			Event{Type: EventFailed, Step: name, Message: r.Error})
		return evs, nil
	}
	s.Status, s.FinishedAt = StepSucceeded, now
	evs = append(evs, Event{Type: EventStepSucceeded, Step: name, Message: out.message, Data: out.data})
	next := r.Current()
	switch {
	case next == nil:
		if err := r.transition(StateSucceeded); err != nil {
			return nil, err
		}
		r.Error = ""
		evs = append(evs, Event{Type: EventSucceeded, Message: "the login method is ready: press Test in the Cloudflare dashboard", Data: map[string]string{"dashboard_url": r.DashboardURL}})
	case next.Kind == KindGate:
		evs = append(evs, e.openGateIn(r, next)...)
		if err := r.transition(StateAwaitingApproval); err != nil {
			return nil, err
		}
	case r.State == StatePending:
		if err := r.transition(StateRunning); err != nil {
			return nil, err
		}
	}
	return evs, nil
}

func problemsData(problems []string) map[string]string {
	d := map[string]string{}
	for i, p := range problems {
		d[fmt.Sprintf("problem_%d", i+1)] = p
	}
	return d
}

// openGate opens a gate reached without a preceding action (not in the
// fixed plan today, but a retry may land on one).
func (e *Engine) openGate(ctx context.Context, id int64, name StepName) error {
	_, err := e.update(ctx, id, func(r *Run) ([]Event, error) {
		s := r.Step(name)
		if r.State.Terminal() || r.Current() != s {
			return nil, errStale
		}
		evs := e.openGateIn(r, s)
		return evs, r.transition(StateAwaitingApproval)
	})
	if errors.Is(err, errStale) {
		return nil
	}
	return err
}

func (e *Engine) openGateIn(r *Run, s *Step) []Event {
	now := e.cfg.Clock.Now().UTC()
	s.Status = StepWaiting
	s.StartedAt = now
	s.Required = e.cfg.ApprovalsRequired
	s.Deadline = now.Add(e.cfg.ApprovalTTL)
	s.RemindAt = time.Time{}
	if e.remindersOn() {
		s.RemindAt = s.Deadline.Add(-e.cfg.ApprovalReminder)
	}
	s.Nonce = newToken(12)
	return []Event{{Type: EventGateOpened, Step: s.Name,
		Message: fmt.Sprintf("gate %s waits for %d approval(s) until %s", s.Name, s.Required, s.Deadline.Format(time.RFC3339)),
		Data:    map[string]string{"required": fmt.Sprint(s.Required), "deadline": s.Deadline.Format(time.RFC3339)}}}
}

func (e *Engine) expire(ctx context.Context, id int64, gate StepName, nonce string) error {
	return e.changeGate(ctx, id, gate, nonce, func(r *Run, s *Step, now time.Time) ([]Event, error) {
		if now.Before(s.Deadline) {
			return nil, errStale
		}
		return e.expireIn(r, s)
	})
}

// changeGate applies fn to run id's open gate if it is still the one the
// driver saw (gate and nonce); a change fn refuses with errStale, or one
// to a gate decided meanwhile, is no error.
func (e *Engine) changeGate(ctx context.Context, id int64, gate StepName, nonce string, fn func(r *Run, s *Step, now time.Time) ([]Event, error)) error {
	_, err := e.update(ctx, id, func(r *Run) ([]Event, error) {
		s := r.OpenGate()
		if s == nil || s.Name != gate || s.Nonce != nonce {
			return nil, errStale
		}
		return fn(r, s, e.cfg.Clock.Now())
	})
	if errors.Is(err, errStale) {
		return nil
	}
	return err
}

// remindersOn reports whether gates get a reminder: one due before the
// gate opens is none.
func (e *Engine) remindersOn() bool {
	return e.cfg.ApprovalReminder > 0 && e.cfg.ApprovalReminder < e.cfg.ApprovalTTL
}

// createdBy names the object a create step makes, by the keys chosen for
// it before the call, or "" for a step that creates nothing.
func createdBy(r *Run, step StepName) string {
	p := r.Params
	switch step {
	case StepAuthentikProvider:
		return fmt.Sprintf("the authentik provider %q (client ID %s)", p.ProviderName, p.ClientID)
	case StepAuthentikApplication:
		return fmt.Sprintf("the authentik application %q", p.ApplicationSlug)
	case StepCloudflareLoginMethod:
		return fmt.Sprintf("the Cloudflare login method %q", p.LoginMethodName)
	}
	return ""
}

// remind records that the approvers of the open gate are reminded of it,
// once: the reminder is an event, delivered by the notifier like the
// others, and a restart finds RemindAt cleared instead of reminding again.
func (e *Engine) remind(ctx context.Context, id int64, gate StepName, nonce string) error {
	return e.changeGate(ctx, id, gate, nonce, func(r *Run, s *Step, now time.Time) ([]Event, error) {
		if s.RemindAt.IsZero() || now.Before(s.RemindAt) || !now.Before(s.Deadline) {
			return nil, errStale
		}
		s.RemindAt = time.Time{}
		missing := max(s.Required-r.CountingApprovals(s.Name), 1)
		return []Event{{Type: EventGateReminder, Step: s.Name,
			Message: fmt.Sprintf("gate %s still waits for %d approval(s); it expires at %s", s.Name, missing, s.Deadline.Format(time.RFC3339)),
			Data:    map[string]string{"missing": fmt.Sprint(missing), "deadline": s.Deadline.Format(time.RFC3339)}}}, nil
	})
}

// dropReminder clears the reminder of the open gate, reminders being off.
func (e *Engine) dropReminder(ctx context.Context, id int64, gate StepName, nonce string) error {
	return e.changeGate(ctx, id, gate, nonce, func(_ *Run, s *Step, _ time.Time) ([]Event, error) {
		if s.RemindAt.IsZero() {
			return nil, errStale
		}
		s.RemindAt = time.Time{}
		return nil, nil
	})
}

// expireIn expires r's open gate s, whose deadline has passed.
func (e *Engine) expireIn(r *Run, s *Step) ([]Event, error) {
	s.Status, s.FinishedAt = StepExpired, e.cfg.Clock.Now().UTC()
	if err := r.transition(StateExpired); err != nil {
		return nil, err
	}
	r.Error = fmt.Sprintf("gate %s expired: no decision before %s", s.Name, s.Deadline.Format(time.RFC3339))
	return []Event{{Type: EventGateExpired, Step: s.Name, Message: r.Error}}, nil
}

// abandonIntent closes a step whose first attempt was recorded with the
// commit that opened it (foldIntent) when the run ended before the call
// was made: the step shows as cancelled, not as running for good.
func (e *Engine) abandonIntent(ctx context.Context, id int64, in intent) {
	_, err := e.update(context.WithoutCancel(ctx), id, func(r *Run) ([]Event, error) {
		s := r.Step(in.step)
		if !r.State.Terminal() || s == nil || s.Status != StepRunning || s.Attempts != in.attempt {
			return nil, errStale
		}
		s.Status, s.FinishedAt = StepCancelled, e.cfg.Clock.Now().UTC()
		return []Event{{Type: EventNote, Step: in.step, Message: fmt.Sprintf("attempt %d of %s not made: the run was %s first", in.attempt, in.step, r.State)}}, nil
	})
	if err != nil && !errors.Is(err, errStale) && !errors.Is(err, ErrNotFound) {
		e.log.Error("close abandoned step", slog.Int64(KeyRunID, id), slog.String(KeyStep, string(in.step)), slog.Any(KeyError, err))
	}
}
