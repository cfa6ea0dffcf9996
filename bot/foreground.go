package bot

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ssobot/ssobot/workflow"
)

// Foreground puts Slack's acknowledgements ahead of background work. Slack
// shows the user an error when a command or click is not answered within
// 3 s, while a step, a message update or a decision loses nothing by
// starting a few milliseconds later. The handlers mark each request they are
// answering (once its signature is verified); background work yields to
// them (see Yield): every call to Slack, authentik and Cloudflare through
// Transport, the bot's own decisions and replies, and the engine before it
// reads and advances a run (workflow.Config.Yield). So a burst of commands
// is answered first instead of sharing the CPU with the runs it started.
// Under a flood that outlasts the first wait, background work goes one call
// at a time: slower, never stopped.
//
// A burst ends once no request has been in flight for quietFor, not the
// moment none is: under steady traffic the count touches zero between
// requests, and releasing every waiting piece of background work at each
// such instant let it take the CPU from the requests arriving right after
// (which then spent longer outside the handlers, touching zero more often).
//
// The zero value is not usable; build it with NewForeground. A nil
// *Foreground waits for nothing.
type Foreground struct {
	active atomic.Int64
	served atomic.Uint64

	mu    sync.Mutex
	idle  chan struct{} // closed once no request has been in flight for quietFor
	quiet *time.Timer   // closes idle once quietFor has passed since lastEnd
	// lastEnd is when the count last dropped to zero, by clock.
	lastEnd  time.Time
	quietFor time.Duration
	// clock tells the time of lastEnd and settle's check against it (the
	// system clock; tests set another). The timers are the system's.
	clock workflow.Clock

	slot    chan struct{} // the one piece of background work let through at a time
	waiting atomic.Int64  // background work yielding
}

// NewForeground returns a Foreground with no request in flight.
func NewForeground() *Foreground {
	idle := make(chan struct{})
	close(idle)
	return &Foreground{idle: idle, slot: make(chan struct{}, 1), quietFor: quietFor, clock: systemClock{}}
}

// Begin marks a request being answered; the returned function marks it
// answered (calling it again does nothing).
func (f *Foreground) Begin() (end func()) {
	if f == nil {
		return func() {}
	}
	f.served.Add(1)
	f.mu.Lock()
	if f.active.Add(1) == 1 && isClosed(f.idle) {
		f.idle = make(chan struct{})
	}
	f.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			f.mu.Lock()
			if f.active.Add(-1) == 0 {
				f.lastEnd = f.clock.Now()
				if f.quiet == nil {
					f.quiet = time.AfterFunc(f.quietFor, f.settle)
				} else {
					f.quiet.Reset(f.quietFor)
				}
			}
			f.mu.Unlock()
		})
	}
}

// settle ends the burst when no request has been in flight for quietFor.
func (f *Foreground) settle() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.active.Load() > 0 || isClosed(f.idle) {
		return // the next end schedules it again
	}
	if left := f.quietFor - f.clock.Now().Sub(f.lastEnd); left > 0 {
		f.quiet.Reset(left) // a request came and went since this was scheduled
		return
	}
	close(f.idle)
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// Served counts the requests marked so far.
func (f *Foreground) Served() uint64 {
	if f == nil {
		return 0
	}
	return f.served.Load()
}

// Active is the number of requests being answered.
func (f *Foreground) Active() int64 {
	if f == nil {
		return 0
	}
	return f.active.Load()
}

// Transport wraps next for the clients of Slack, authentik and Cloudflare,
// which only background work uses (an acknowledgement never calls an API):
// each call first yields (see Yield).
func (f *Foreground) Transport(next http.RoundTripper) http.RoundTripper {
	if f == nil {
		return next
	}
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		done, err := f.Yield(r.Context())
		if err != nil {
			return nil, err
		}
		defer done()
		return next.RoundTrip(r)
	})
}

// Yield lets the requests being answered go first: with none in flight it
// returns at once; otherwise it waits until they are answered, and under a
// flood lasting longer than yieldAtMost it lets background work through one
// piece at a time (until done is called). It fails only when ctx is done.
func (f *Foreground) Yield(ctx context.Context) (done func(), err error) {
	if f == nil || f.active.Load() == 0 {
		return func() {}, nil
	}
	f.mu.Lock()
	idle := f.idle
	f.mu.Unlock()
	f.waiting.Add(1)
	defer f.waiting.Add(-1)
	t := time.NewTimer(yieldAtMost)
	defer t.Stop()
	select {
	case <-idle:
		return func() {}, nil
	case <-t.C:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case f.slot <- struct{}{}:
		return func() { <-f.slot }, nil
	case <-idle:
		return func() {}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// quietFor is how long no request must be in flight for a burst to be
// over: longer than the gaps between the requests of a busy workspace, short
// enough that a lone command's run starts at once to a person.
const quietFor = 5 * time.Millisecond

// yieldAtMost is how long a background call waits for the requests in
// flight to be answered before it goes anyway (one at a time). A burst of
// commands starts a run each, whose first steps would otherwise come in
// among the burst's last answers: at 100 ms, `new`'s p99 at 50 senders was
// 3.2–4.9× the floor's in four runs of `ssobot bench --only ack`, at 400 ms
// 1.3–2.1× (run alternately). Background work is not waited on by people
// at this scale; only under traffic with no 5 ms gap does it go slower.
const yieldAtMost = 400 * time.Millisecond

type roundTripFunc func(*http.Request) (*http.Response, error)

func (fn roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return fn(r) }
