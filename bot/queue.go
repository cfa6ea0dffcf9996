package bot

import (
	"slices"
	"sync"
	"time"

	"github.com/ssobot/ssobot/workflow"
)

// maxQueuedEvents bounds the thread replies kept for one run while Slack is
// unreachable; older ones are dropped first.
const maxQueuedEvents = 200

// queue holds delivery work keyed by run ID. Snapshots coalesce (only the
// newest matters for the root message); events keep their order. push never
// blocks, so the engine is never held up by Slack.
type queue struct {
	mu    sync.Mutex
	items map[int64]*item
	order []int64 // runs with work, oldest first
	wake  chan struct{}
}

type item struct {
	run       *workflow.Run
	events    []workflow.Event
	queued    bool // in order
	notBefore time.Time
	failures  int
	dropped   int // events dropped for lack of room
}

func newQueue() *queue {
	return &queue{items: map[int64]*item{}, wake: make(chan struct{}, 1)}
}

// push adds a snapshot and its events.
func (q *queue) push(run *workflow.Run, events []workflow.Event) {
	q.mu.Lock()
	it := q.items[run.ID]
	if it == nil {
		it = &item{}
		q.items[run.ID] = it
	}
	if it.run == nil || run.Version >= it.run.Version {
		it.run = run
	}
	it.events = append(it.events, events...)
	if n := len(it.events) - maxQueuedEvents; n > 0 {
		it.events = slices.Delete(it.events, 0, n)
		it.dropped += n
	}
	if !it.queued {
		it.queued = true
		q.order = append(q.order, run.ID)
	}
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// work is one delivery taken from the queue.
type work struct {
	run     *workflow.Run
	events  []workflow.Event
	dropped int
}

// take removes the first run whose work is due at now. When none is due it
// returns how long until the earliest is (0: nothing queued).
func (q *queue) take(now time.Time) (work, bool, time.Duration) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var wait time.Duration
	for i, id := range q.order {
		it := q.items[id]
		if now.Before(it.notBefore) {
			if d := it.notBefore.Sub(now); wait == 0 || d < wait {
				wait = d
			}
			continue
		}
		q.order = slices.Delete(q.order, i, i+1)
		w := work{run: it.run, events: it.events, dropped: it.dropped}
		// The item stays, holding the newest snapshot and the failure
		// count, until the work is done.
		it.events, it.dropped, it.queued = nil, 0, false
		return w, true, 0
	}
	return work{}, false, wait
}

// done records the outcome of taken work. On failure the work goes back in
// front of anything that arrived meanwhile, not before retryAt. It reports
// whether the run has no work left in the queue.
func (q *queue) done(w work, failed bool, retryAt time.Time, countFailure bool) (idle bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	it := q.items[w.run.ID]
	if it == nil {
		return true
	}
	if !failed {
		it.failures = 0
		it.notBefore = time.Time{}
		if !it.queued {
			delete(q.items, w.run.ID)
			return true
		}
		return false
	}
	if countFailure {
		it.failures++
	}
	it.notBefore = retryAt
	it.events = append(slices.Clone(w.events), it.events...)
	it.dropped += w.dropped
	if !it.queued {
		it.queued = true
		q.order = append(q.order, w.run.ID)
	}
	return false
}

// failures is how many times in a row delivery of a run failed.
func (q *queue) failures(id int64) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	if it := q.items[id]; it != nil {
		return it.failures
	}
	return 0
}

// pending counts runs with work queued.
func (q *queue) pending() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.order)
}

// notices keeps the response URLs of slash commands in memory only (they are
// credentials of a sort and die after 30 minutes), so a requester can be told
// privately when their run's message cannot be posted.
type notices struct {
	clock     workflow.Clock
	mu        sync.Mutex
	byRun     map[int64]notice
	byReq     map[string]notice // user|channel of a command being started
	nextPrune time.Time
}

type notice struct {
	url     string
	user    string // who typed the command: its answers are for them alone
	expires time.Time
}

// responseURLLifetime is how long Slack accepts a response URL.
const responseURLLifetime = 30 * time.Minute

func newNotices(c workflow.Clock) *notices {
	return &notices{clock: c, byRun: map[int64]notice{}, byReq: map[string]notice{}}
}

func (n *notices) rememberRequest(user, channel, url string) {
	if url == "" {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.prune()
	n.byReq[user+"|"+channel] = notice{url: url, expires: n.clock.Now().Add(responseURLLifetime)}
}

func (n *notices) rememberRun(id int64, user, url string) {
	if url == "" {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.prune()
	n.byRun[id] = notice{url: url, user: user, expires: n.clock.Now().Add(responseURLLifetime)}
}

// lookup finds a response URL that reaches user privately: the one of the
// command that started run id if user typed it, else user's latest command
// in channel.
func (n *notices) lookup(id int64, user, channel string) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	now := n.clock.Now()
	if x, ok := n.byRun[id]; ok && x.user == user && now.Before(x.expires) {
		return x.url
	}
	if x, ok := n.byReq[user+"|"+channel]; ok && now.Before(x.expires) {
		return x.url
	}
	return ""
}

// noticePruneEvery spaces the sweeps of expired notices: a sweep reads every
// entry, and a burst of commands must not pay for one each.
const noticePruneEvery = time.Minute

func (n *notices) prune() {
	now := n.clock.Now()
	if now.Before(n.nextPrune) {
		return
	}
	n.nextPrune = now.Add(noticePruneEvery)
	for k, x := range n.byRun {
		if !now.Before(x.expires) {
			delete(n.byRun, k)
		}
	}
	for k, x := range n.byReq {
		if !now.Before(x.expires) {
			delete(n.byReq, k)
		}
	}
}
