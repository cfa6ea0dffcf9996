// Package bot is the Slack front end of ssobot: it verifies and answers slash
// commands and interactions (over HTTP or Socket Mode), keeps one message per
// run up to date, and tells the engine who may approve.
//
// Nothing on the acknowledgement path calls the Slack Web API: Slack gives a
// request 3 seconds, so messages, modals and private replies are sent from
// background goroutines and from the delivery worker started by Run.
package bot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/slack-go/slack"

	"github.com/ssobot/ssobot/workflow"
)

// Engine is what the bot needs of *workflow.Engine.
type Engine interface {
	Validate(req workflow.Request) (workflow.Request, error)
	Start(ctx context.Context, req workflow.Request) (*workflow.Run, error)
	Decide(ctx context.Context, d workflow.DecisionRequest) (*workflow.Run, error)
	Cancel(ctx context.Context, runID int64, user, reason string) (*workflow.Run, error)
	Retry(ctx context.Context, runID int64, user string) (*workflow.Run, error)
	Get(ctx context.Context, id int64) (*workflow.Run, error)
	List(ctx context.Context, opts workflow.ListOptions) ([]*workflow.Run, error)
	Events(ctx context.Context, id int64) ([]workflow.Event, error)
	SetMessageRef(ctx context.Context, id int64, ref string) (*workflow.Run, error)
	SetDelivered(ctx context.Context, id int64, seq uint64) (*workflow.Run, error)
}

// Config configures a Bot. Client is required.
type Config struct {
	// Client calls the Slack Web API with the bot token; cmd builds it with
	// slack.OptionAPIURL and friends. It must not retry by itself: the bot
	// retries rate-limited calls off the request path.
	Client *slack.Client
	// SigningSecret verifies HTTP requests. Without it every HTTP request is
	// refused (Socket Mode needs none).
	SigningSecret workflow.Secret

	ApproverUsers  []string // user IDs (U…, W…)
	ApproverGroups []string // user group IDs (S…)
	// ApprovalsRequired and AllowSelfApproval are the engine's; with them
	// the bot refuses at once a run no one else could approve (see
	// unapprovable) instead of letting it wait for its gate to expire.
	ApprovalsRequired int
	AllowSelfApproval bool
	// AllowedChannels limits where runs may be started (new, the form) and
	// resumed (retry, an Approve click: by the run's channel); empty:
	// anywhere. The other commands, and Reject, answer anywhere.
	AllowedChannels []string
	// AllowedRequesters limits who may start runs; empty: anyone.
	AllowedRequesters []string
	// GroupCacheTTL is how long user group members and user records are
	// trusted; default 1m.
	GroupCacheTTL time.Duration

	// AuthentikURL is authentik's public URL, for links when a run lacks it.
	AuthentikURL string
	// CloudflareAccountID is for dashboard links when a run lacks it.
	CloudflareAccountID string

	// Foreground, when set, is told about every request being answered
	// (once its signature is verified, so that unsigned or slow clients
	// cannot hold background work back), so that background work built to
	// wait on it (see Foreground.Transport) gives way to acknowledgements.
	Foreground *Foreground

	Clock        workflow.Clock // nil: the system clock
	Logger       *slog.Logger   // nil: discard
	MaxBodyBytes int64          // largest accepted request body; default 64 KiB
}

// Defaults of Config.
const (
	DefaultGroupCacheTTL = time.Minute
	DefaultMaxBodyBytes  = 64 << 10
)

// Bot is the Slack front end. Build it with New, give it the engine with
// Attach, and start Run (and RunSocketMode when an app-level token is set).
type Bot struct {
	cfg    Config
	client *slack.Client
	clock  workflow.Clock
	log    *slog.Logger
	appr   *approvers

	engMu  sync.RWMutex
	engine Engine

	queue   *queue
	replays *replayGuard
	// notices keeps response URLs of slash commands in memory only, so a
	// requester can be told privately when the run's message cannot be posted.
	notices *notices
	// cards remembers the status cards last sent (see statusCards).
	cards *statusCards

	// wg tracks background work started by handlers (modals, private replies).
	wg      sync.WaitGroup
	pending atomic.Int64 // background work started and not finished, for Drain's error
	// socketUp is whether Socket Mode is connected (see SocketConnected).
	socketUp atomic.Bool
	// bgCtx is the parent of background work, which is bounded by timeouts
	// rather than by the request that started it.
	bgCtx context.Context
	// bgSlots bounds the background work running at once.
	bgSlots chan struct{}
	// jobs is the background work waiting for a worker (see background).
	jobs jobQueue
	// tracked is how many runs the delivery worker remembers (for tests).
	tracked atomic.Int64
}

// New checks the configuration and returns a bot.
func New(cfg Config) (*Bot, error) {
	if cfg.Client == nil {
		return nil, errors.New("bot: a Slack client is required")
	}
	if cfg.GroupCacheTTL <= 0 {
		cfg.GroupCacheTTL = DefaultGroupCacheTTL
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.Clock == nil {
		cfg.Clock = systemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	b := &Bot{
		cfg:     cfg,
		client:  cfg.Client,
		clock:   cfg.Clock,
		log:     cfg.Logger,
		queue:   newQueue(),
		replays: newReplayGuard(cfg.Clock),
		notices: newNotices(cfg.Clock),
		cards:   newStatusCards(statusCardsKept),
	}
	b.appr = newApprovers(cfg.Client, cfg.ApproverUsers, cfg.ApproverGroups, cfg.GroupCacheTTL, cfg.Clock, cfg.Logger)
	b.bgCtx = context.Background()
	b.bgSlots = make(chan struct{}, backgroundWorkers)
	return b, nil
}

// Attach gives the bot its engine. The engine is built after the bot because
// it needs the bot as its Notifier and Approvers.
func (b *Bot) Attach(e Engine) {
	b.engMu.Lock()
	defer b.engMu.Unlock()
	b.engine = e
}

func (b *Bot) eng() Engine {
	b.engMu.RLock()
	defer b.engMu.RUnlock()
	return b.engine
}

// Approvers returns the eligibility check the engine consults for decisions,
// cancellations and retries.
func (b *Bot) Approvers() workflow.Approvers { return b.appr }

// Handler serves POST /slack/commands and POST /slack/interactions.
func (b *Bot) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /slack/commands", b.serveCommand)
	mux.HandleFunc("POST /slack/interactions", b.serveInteraction)
	return mux
}

// backgroundWorkers bounds concurrent background work (decisions, modals,
// private replies): enough to overlap Slack round trips on a small machine.
const backgroundWorkers = 8

// async runs fn off the request path with timeout, counted from when it
// gets a slot. A panic there is logged, not fatal: one bad click must not
// stop the bot for everyone (the engine's records are durable, but the
// bot's queue is not).
func (b *Bot) async(timeout time.Duration, fn func(ctx context.Context)) {
	b.background(timeout, false, fn)
}

// asyncBy is async for work whose deadline counts from the request, such
// as opening a form: its trigger_id dies 3 s after the command was sent.
// The wait for a slot counts against timeout; once it is spent, fn runs at
// once with a done context, to say what went wrong.
func (b *Bot) asyncBy(timeout time.Duration, fn func(ctx context.Context)) {
	b.background(timeout, true, fn)
}

// A bounded number of pieces of background work run at once (each holds one
// of bgSlots while it runs), so a flood of clicks cannot take the CPU from
// acknowledgements; the rest wait their turn, none dropped. Work bound by the
// request's deadline waits in a goroutine of its own, which stops waiting at
// the deadline; the rest waits in a queue that at most backgroundWorkers
// goroutines work through. A goroutine per click kept thousands waiting
// during a flood (4,000 Approve clicks in a round of the benchmark), whose
// stacks the collector scanned: in three A/B pairs of those rounds the
// queue took the clicks' p99 from 8.2–9.7 to 7.0–7.4 ms and their slowest
// answer from 27–40 to 11–12 ms.
func (b *Bot) background(timeout time.Duration, fromRequest bool, fn func(ctx context.Context)) {
	b.wg.Add(1)
	b.pending.Add(1)
	if !fromRequest {
		if b.jobs.push(job{timeout: timeout, fn: fn}) {
			go b.work()
		}
		return
	}
	ctx, cancel := context.WithTimeout(b.bgCtx, timeout)
	go func() {
		defer b.wg.Done()
		defer b.pending.Add(-1)
		defer cancel()
		select {
		case b.bgSlots <- struct{}{}:
			defer func() { <-b.bgSlots }()
			b.yield(ctx)
		case <-ctx.Done():
		}
		b.runJob(ctx, fn)
	}()
}

// work runs queued background work until the queue is empty.
func (b *Bot) work() {
	for {
		j, ok := b.jobs.pop()
		if !ok {
			return
		}
		func() {
			defer b.wg.Done()
			defer b.pending.Add(-1)
			b.bgSlots <- struct{}{}
			defer func() { <-b.bgSlots }()
			b.yield(b.bgCtx)
			ctx, cancel := context.WithTimeout(b.bgCtx, j.timeout)
			defer cancel()
			b.runJob(ctx, j.fn)
		}()
	}
}

// yield lets the acknowledgements in flight go first. The turn is given
// back at once: the work's own calls to Slack take theirs through the
// transport (holding it across the work would make them wait for
// themselves). An error means shutdown or the deadline, when the work's
// context is done too.
func (b *Bot) yield(ctx context.Context) {
	if done, err := b.cfg.Foreground.Yield(ctx); err == nil {
		done()
	}
}

// runJob runs fn, logging a panic instead of dying of it.
func (b *Bot) runJob(ctx context.Context, fn func(ctx context.Context)) {
	defer func() {
		if v := recover(); v != nil {
			b.log.Error("panic in background work for Slack", slog.Any("panic", v))
		}
	}()
	fn(ctx)
}

// job is a piece of background work waiting in jobQueue.
type job struct {
	timeout time.Duration
	fn      func(ctx context.Context)
}

// jobQueue is the background work waiting for a worker, first in first out.
type jobQueue struct {
	mu      sync.Mutex
	jobs    []job
	next    int // jobs[next:] wait
	workers int // goroutines working through the queue, at most backgroundWorkers
}

// push queues j and reports whether the caller must start a worker.
func (q *jobQueue) push(j job) (startWorker bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.next > 0 && q.next == len(q.jobs) {
		q.jobs, q.next = q.jobs[:0], 0 // drained: reuse the array
	}
	q.jobs = append(q.jobs, j)
	if q.workers < backgroundWorkers {
		q.workers++
		return true
	}
	return false
}

// pop takes the oldest job; when none waits, the worker calling it stops.
func (q *jobQueue) pop() (job, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.next == len(q.jobs) {
		q.workers--
		return job{}, false
	}
	j := q.jobs[q.next]
	q.jobs[q.next] = job{} // let the closure go
	q.next++
	return j, true
}

// Drain waits until the background work the handlers started is done:
// Slack was answered for each of those requests (a click's decision, a
// cancel, a retry, a modal, a private reply), so stopping before them would
// drop what people were told was taken. Call it once no more requests come
// in (the Slack listener and Socket Mode stopped) and before the engine
// stops. Each piece is bounded by its own timeout; ctx bounds the wait.
func (b *Bot) Drain(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		b.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("unfinished background work for Slack requests: %d: %w", b.pending.Load(), ctx.Err())
	}
}

type systemClock struct{}

func (systemClock) Now() time.Time                         { return time.Now() }
func (systemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }
