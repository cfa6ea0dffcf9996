package bot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slack-go/slack"

	"github.com/ssobot/ssobot/bot/slacktest"
	"github.com/ssobot/ssobot/workflow"
	"github.com/ssobot/ssobot/workflow/workflowtest"
)

const testSecret = "8f742231b10e8888abcd99yyyzzz85a5"

// testClock is a clock whose waits return at once and move it forward, so
// retry delays are exercised without sleeping and can be asserted.
type testClock struct {
	mu    sync.Mutex
	now   time.Time
	waits []time.Duration
}

func newTestClock() *testClock { return &testClock{now: time.Now()} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.waits = append(c.waits, d)
	c.now = c.now.Add(d)
	ch := make(chan time.Time, 1)
	ch <- c.now
	return ch
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func (c *testClock) Waits() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.waits)
}

// fakeEngine is a small in-memory engine recording what the bot asks of it.
type fakeEngine struct {
	clock workflow.Clock

	mu       sync.Mutex
	runs     map[int64]*workflow.Run
	nextID   int64
	calls    []string
	decides  []workflow.DecisionRequest
	cancels  []string // "id|user|reason"
	decideFn func(d workflow.DecisionRequest) (*workflow.Run, error)
	startErr error
	// startHook, when set, runs at the start of Start with its context; a
	// non-nil error fails it.
	startHook func(ctx context.Context) error
	notifier  workflow.Notifier
	events    map[int64][]workflow.Event
}

func newFakeEngine(c workflow.Clock) *fakeEngine {
	return &fakeEngine{clock: c, runs: map[int64]*workflow.Run{}}
}

func (f *fakeEngine) record(call string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call)
}

func (f *fakeEngine) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

func (f *fakeEngine) Validate(req workflow.Request) (workflow.Request, error) {
	f.record("Validate")
	req.ApplicationName = strings.TrimSpace(req.ApplicationName)
	if err := workflow.ValidateName("application name", req.ApplicationName); err != nil {
		return req, err
	}
	if req.ApplicationSlug == "" {
		req.ApplicationSlug = workflow.Slugify(req.ApplicationName)
	}
	if err := workflow.ValidateSlug(req.ApplicationSlug); err != nil {
		return req, err
	}
	if req.TeamDomain != "" {
		t, err := workflow.NormalizeTeamDomain(req.TeamDomain)
		if err != nil {
			return req, err
		}
		req.TeamDomain = t
	}
	if req.LoginMethodName == "" {
		req.LoginMethodName = "authentik"
	}
	return req, nil
}

func (f *fakeEngine) Start(ctx context.Context, req workflow.Request) (*workflow.Run, error) {
	f.record("Start")
	if f.startErr != nil {
		return nil, f.startErr
	}
	if f.startHook != nil {
		if err := f.startHook(ctx); err != nil {
			return nil, err
		}
	}
	req, err := f.Validate(req)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.nextID++
	now := f.clock.Now()
	r := &workflow.Run{ID: f.nextID, State: workflow.StatePending, Version: 1, Request: req,
		Params:    workflow.Params{ApplicationName: req.ApplicationName, ApplicationSlug: req.ApplicationSlug, LoginMethodName: req.LoginMethodName, TeamDomain: req.TeamDomain},
		CreatedAt: now, UpdatedAt: now}
	for _, p := range workflow.Plan {
		r.Steps = append(r.Steps, workflow.Step{Name: p.Name, Kind: p.Kind, Status: workflow.StepPending})
	}
	f.runs[r.ID] = r
	n := f.notifier
	// Cloned under the lock: the worker may cancel the run at once.
	snap := r.Clone()
	f.mu.Unlock()
	if n != nil {
		n.RunChanged(ctx, snap.Clone(), []workflow.Event{{RunID: snap.ID, Seq: 1, Type: workflow.EventCreated}})
	}
	return snap, nil
}

// put stores a run as the engine's current state. Like a write of the
// store, it leaves the run at a Version past the one stored before.
func (f *fakeEngine) put(r *workflow.Run) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := r.Clone()
	if old, ok := f.runs[r.ID]; ok && c.Version <= old.Version {
		c.Version = old.Version + 1
	}
	f.runs[r.ID] = c
	if r.ID > f.nextID {
		f.nextID = r.ID
	}
}

func (f *fakeEngine) Decide(ctx context.Context, d workflow.DecisionRequest) (*workflow.Run, error) {
	f.record("Decide")
	f.mu.Lock()
	f.decides = append(f.decides, d)
	fn := f.decideFn
	f.mu.Unlock()
	if fn != nil {
		return fn(d)
	}
	return nil, &workflow.RefusedError{Reason: "not in this test"}
}

func (f *fakeEngine) Cancel(ctx context.Context, id int64, user, reason string) (*workflow.Run, error) {
	f.record("Cancel")
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cancels = append(f.cancels, fmt.Sprintf("%d|%s|%s", id, user, reason))
	r, ok := f.runs[id]
	if !ok {
		return nil, fmt.Errorf("run %d: %w", id, workflow.ErrNotFound)
	}
	if user != workflow.SystemActor && user != r.Request.RequestedBy {
		return nil, &workflow.RefusedError{Reason: "only the requester or an approver may do that"}
	}
	r.State = workflow.StateCancelled
	r.Version++
	return r.Clone(), nil
}

func (f *fakeEngine) Cancels() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.cancels)
}

func (f *fakeEngine) Retry(ctx context.Context, id int64, user string) (*workflow.Run, error) {
	f.record("Retry")
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.runs[id]
	if !ok {
		return nil, fmt.Errorf("run %d: %w", id, workflow.ErrNotFound)
	}
	if r.State != workflow.StateFailed {
		return nil, &workflow.RefusedError{Reason: fmt.Sprintf("run #%d is %s; only failed runs can be retried", id, r.State), Kind: workflow.RefusedRunState, State: r.State}
	}
	r.State = workflow.StateRunning
	r.Version++
	return r.Clone(), nil
}

func (f *fakeEngine) Get(ctx context.Context, id int64) (*workflow.Run, error) {
	f.record("Get")
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.runs[id]
	if !ok {
		return nil, fmt.Errorf("run %d: %w", id, workflow.ErrNotFound)
	}
	return r.Clone(), nil
}

func (f *fakeEngine) List(ctx context.Context, opts workflow.ListOptions) ([]*workflow.Run, error) {
	f.record("List")
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*workflow.Run
	for id := f.nextID; id > 0; id-- {
		r, ok := f.runs[id]
		if !ok || (len(opts.States) > 0 && !slices.Contains(opts.States, r.State)) {
			continue
		}
		out = append(out, r.Clone())
		if opts.Limit > 0 && len(out) == opts.Limit {
			break
		}
	}
	return out, nil
}

func (f *fakeEngine) Events(ctx context.Context, id int64) ([]workflow.Event, error) {
	f.record("Events")
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.events[id]), nil
}

func (f *fakeEngine) SetDelivered(ctx context.Context, id int64, seq uint64) (*workflow.Run, error) {
	f.record("SetDelivered")
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.runs[id]
	if !ok {
		return nil, fmt.Errorf("run %d: %w", id, workflow.ErrNotFound)
	}
	r.Delivered = max(r.Delivered, seq)
	return r.Clone(), nil
}

func (f *fakeEngine) SetMessageRef(ctx context.Context, id int64, ref string) (*workflow.Run, error) {
	f.record("SetMessageRef")
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.runs[id]
	if !ok {
		return nil, fmt.Errorf("run %d: %w", id, workflow.ErrNotFound)
	}
	r.MessageRef = ref
	r.Version++
	return r.Clone(), nil
}

func (f *fakeEngine) run(id int64) *workflow.Run {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r, ok := f.runs[id]; ok {
		return r.Clone()
	}
	return nil
}

// harness is a bot wired to a fake Slack and an engine, with its HTTP
// handler served and its delivery worker running.
type harness struct {
	t      *testing.T
	slack  *slacktest.Server
	bot    *Bot
	clock  *testClock
	http   *httptest.Server
	logBuf *workflowtest.Buffer
}

type harnessOpt func(*Config)

// newHarness builds a bot on a fresh fake Slack with channel C1 (bot is a
// member), requester U1, approver U2 and bystander U3. The engine is attached
// and the worker started unless eng is nil.
func newHarness(t *testing.T, eng Engine, opts ...harnessOpt) *harness {
	t.Helper()
	srv := slacktest.NewServer()
	t.Cleanup(srv.Close)
	srv.AddChannel("C1", "sso", true)
	srv.AddUser(slacktest.User{ID: "U1", Name: "requester"})
	srv.AddUser(slacktest.User{ID: "U2", Name: "approver"})
	srv.AddUser(slacktest.User{ID: "U3", Name: "bystander"})
	clock := newTestClock()
	logBuf := &workflowtest.Buffer{}
	cfg := Config{
		Client:              slack.New(srv.BotToken(), slack.OptionAPIURL(srv.APIURL())),
		SigningSecret:       workflow.NewSecret(testSecret),
		ApproverUsers:       []string{"U2"},
		AuthentikURL:        "https://auth.example.com",
		CloudflareAccountID: "acc123",
		Clock:               clock,
		Logger:              slog.New(slog.NewTextHandler(logBuf, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for _, o := range opts {
		o(&cfg)
	}
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, slack: srv, bot: b, clock: clock, logBuf: logBuf}
	h.http = httptest.NewServer(b.Handler())
	t.Cleanup(h.http.Close)
	if eng != nil {
		b.Attach(eng)
		h.startWorker()
	}
	t.Cleanup(b.wg.Wait)
	return h
}

func (h *harness) startWorker() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.bot.Run(ctx) }()
	h.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			h.t.Errorf("Run: %v", err)
		}
	})
}

// post sends a signed form to the bot's HTTP handler.
func (h *harness) post(path string, form url.Values) (int, string) {
	h.t.Helper()
	return h.postAt(path, form, h.clock.Now())
}

func (h *harness) postAt(path string, form url.Values, ts time.Time) (int, string) {
	h.t.Helper()
	req := slacktest.SignedRequest(h.http.URL+path, testSecret, []byte(form.Encode()), ts)
	resp, err := boundedClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// boundedClient sends the tests' requests to the bot: an answer that does
// not come fails the test instead of hanging it.
var boundedClient = &http.Client{Timeout: 10 * time.Second}

// holdSlack holds every call to Slack until release is closed (or a bound
// passes, when the call fails), so that a test sees what a request did
// before its background work could reach Slack.
type holdSlack struct{ release chan struct{} }

func newHoldSlack() holdSlack { return holdSlack{release: make(chan struct{})} }

func (h holdSlack) RoundTrip(r *http.Request) (*http.Response, error) {
	select {
	case <-h.release:
		return http.DefaultTransport.RoundTrip(r)
	case <-r.Context().Done():
		return nil, r.Context().Err()
	case <-time.After(20 * time.Second):
		return nil, errHeldTooLong
	}
}

// testReply is a decoded answer to a slash command.
type testReply struct {
	ResponseType string          `json:"response_type"`
	Text         string          `json:"text"`
	Blocks       json.RawMessage `json:"blocks"`
}

// command runs a slash command and decodes the private answer.
func (h *harness) command(user, channel, text string) testReply {
	h.t.Helper()
	cmd := h.slack.NewSlashCommand("/sso-setup", text, user, channel)
	status, body := h.post("/slack/commands", slacktest.SlashCommandForm(cmd))
	if status != http.StatusOK {
		h.t.Fatalf("command %q: status %d: %s", text, status, body)
	}
	var r testReply
	if strings.TrimSpace(body) != "" {
		if err := json.Unmarshal([]byte(body), &r); err != nil {
			h.t.Fatalf("command %q: decode %q: %v", text, body, err)
		}
	}
	return r
}

// waitCalls waits until pred holds over the fake's calls.
func (h *harness) waitCalls(what string, pred func([]slacktest.Call) bool) []slacktest.Call {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	calls, err := h.slack.WaitFor(ctx, pred)
	if err != nil {
		h.t.Fatalf("waiting for %s: %v\ncalls:\n%s", what, err, callList(calls))
	}
	return calls
}

func callList(calls []slacktest.Call) string {
	var b strings.Builder
	for _, c := range calls {
		b.WriteString("  " + truncateRunes(c.String(), 300) + "\n")
	}
	return b.String()
}

func countMethod(calls []slacktest.Call, method string) int {
	n := 0
	for _, c := range calls {
		if c.Method == method {
			n++
		}
	}
	return n
}

func okCalls(calls []slacktest.Call, method string) []slacktest.Call {
	var out []slacktest.Call
	for _, c := range calls {
		if c.Method == method && c.Error == "" && c.Status == http.StatusOK {
			out = append(out, c)
		}
	}
	return out
}

// responseTexts are the texts posted to response URLs.
func responseTexts(calls []slacktest.Call) []string {
	var out []string
	for _, c := range calls {
		if c.Method == slacktest.MethodResponseURL {
			out = append(out, c.Param("text"))
		}
	}
	return out
}

func anyContains(ss []string, sub string) bool {
	return slices.ContainsFunc(ss, func(s string) bool { return strings.Contains(s, sub) })
}

var errBoom = errors.New("boom")

// bareControl returns the first < or > in mrkdwn text that is not part of
// one of Slack's control sequences (mentions, channels, user groups, dates,
// links), or "". Slack reads a bare < as the start of a link, so text meant
// literally must carry &lt; and &gt;.
func bareControl(text string) string {
	allowed := []string{"<@", "<#", "<!subteam^", "<!date^", "<http://", "<https://", "<mailto:"}
	for i := 0; i < len(text); i++ {
		switch text[i] {
		case '>':
			return text[max(0, i-20):min(len(text), i+20)]
		case '<':
			ok := false
			for _, p := range allowed {
				ok = ok || strings.HasPrefix(text[i:], p)
			}
			end := strings.IndexByte(text[i:], '>')
			if !ok || end < 0 {
				return text[i:min(len(text), i+40)]
			}
			i += end
		}
	}
	return ""
}

func TestBareControl(t *testing.T) {
	for text, want := range map[string]bool{
		"plain":                             true,
		"<@U1> and <#C1> <!subteam^S1>":     true,
		"<https://x.example|x> &lt;run&gt;": true,
		"`new <application name>`":          false,
		"a > b":                             false,
		"<!channel>":                        false,
	} {
		if got := bareControl(text) == ""; got != want {
			t.Errorf("bareControl(%q) clean = %v; want %v", text, got, want)
		}
	}
}
