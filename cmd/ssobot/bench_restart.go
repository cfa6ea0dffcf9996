//go:build !ssobot_server

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/slack-go/slack"

	"github.com/ssobot/ssobot/bot/slacktest"
	"github.com/ssobot/ssobot/store"
	"github.com/ssobot/ssobot/workflow"
	"github.com/ssobot/ssobot/workflow/authentik/authentiktest"
	"github.com/ssobot/ssobot/workflow/cloudflare/cloudflaretest"
)

// benchRestart runs the real binary (ssobot serve) against fakes in this
// process: the time from exec to /readyz answering 200 with an empty
// database and with a long history, resident memory idle and after runs
// driven through the Slack endpoints, and the time a SIGTERM takes.
func benchRestart(ctx context.Context, b *bench, s *benchSection) error {
	bin, err := b.ssobotBinary(ctx)
	if err != nil {
		return err
	}
	finished, open, driven := pick(b, 200, 10_000), pick(b, 10, 100), pick(b, 10, 1000)

	b.logf("   a real run, as the template of the history")
	tmpl, tmplEvents, err := benchTemplateRun(ctx)
	if err != nil {
		return err
	}

	f, err := newBenchFakes()
	if err != nil {
		return err
	}
	defer f.Close()

	// The history: written where fsync is cheap when possible (its
	// writing is not measured), then copied to the disk the bot uses.
	b.logf("   writing %d finished and %d open runs", finished, open)
	genStart := time.Now()
	seeded, maxID, dbSize, err := benchHistory(ctx, f, tmpl, tmplEvents, finished, open)
	if err != nil {
		return err
	}
	b.logf("   written in %s", fmtDur(time.Since(genStart)))
	dbPath := filepath.Join(f.dir, "ssobot.db")
	err = copyFile(seeded, dbPath)
	os.RemoveAll(filepath.Dir(seeded))
	if err != nil {
		return err
	}
	t := s.table("Start to ready (exec of ssobot serve until GET /readyz answers 200; the start-up credential checks hit the fakes)",
		"database", "size", "to first log line", "to admin listener", "to ready", "peak RSS while starting")

	// An empty database first: the baseline.
	b.logf("   start with an empty database")
	p, err := startBenchProc(bin, f.env(filepath.Join(f.dir, "empty.db")))
	if err != nil {
		return err
	}
	if err := p.waitReady(ctx); err != nil {
		p.kill()
		return err
	}
	hwm, _ := procStatus(p.pid(), "VmHWM")
	t.row("empty", "0", fmtDur(p.mark("starting")), fmtDur(p.mark("admin API listening")), fmtDur(p.ready), fmtMB(hwm))
	if err := f.settle(ctx, 300*time.Millisecond); err != nil {
		return err
	}
	empty, err := p.memory(ctx)
	if err != nil {
		return err
	}
	if _, err := p.stop(ctx); err != nil {
		return err
	}

	b.logf("   start with %d finished and %d open runs", finished, open)
	p, err = startBenchProc(bin, f.env(dbPath))
	if err != nil {
		return err
	}
	defer p.kill()
	if err := p.waitReady(ctx); err != nil {
		return err
	}
	hwm, _ = procStatus(p.pid(), "VmHWM")
	t.row(fmt.Sprintf("%d finished + %d open runs", finished, open), fmtMB(dbSize),
		fmtDur(p.mark("starting")), fmtDur(p.mark("admin API listening")), fmtDur(p.ready), fmtMB(hwm))
	s.value("ready_ms", ms(p.ready))
	s.check(fmt.Sprintf("start to ready, %d finished + %d open runs", finished, open), "< 500ms", fmtDur(p.ready), p.ready < 500*time.Millisecond)

	// Idle: once the catch-up (the open runs' messages refreshed) is over.
	if err := f.settle(ctx, 300*time.Millisecond); err != nil {
		return err
	}
	idle, err := p.memory(ctx)
	if err != nil {
		return err
	}

	b.logf("   %d runs through the Slack endpoints", driven)
	dr, err := f.drive(ctx, p, driven, maxID, finished)
	if err != nil {
		return err
	}
	if err := f.settle(ctx, 300*time.Millisecond); err != nil {
		return err
	}
	after, err := p.memory(ctx)
	if err != nil {
		return err
	}
	// At rest: the bot returns free memory to the system once idle for
	// idleRelease, checked every idleRelease.
	b.logf("   resting %s", 2*idleRelease+time.Second)
	select {
	case <-time.After(2*idleRelease + time.Second):
	case <-ctx.Done():
		return ctx.Err()
	}
	rested, err := p.memory(ctx)
	if err != nil {
		return err
	}
	stopTook, err := p.stop(ctx)
	if err != nil {
		return err
	}

	mt := s.table("Resident memory of ssobot serve (/proc/<pid>/status; Go figures from /metrics)",
		"when", "RSS (VmRSS)", "anonymous (RssAnon)", "file pages (RssFile)", "of which the mmapped database", "Go heap in use", "goroutines", "peak RSS so far (VmHWM)")
	for _, row := range []struct {
		when string
		m    benchMemory
	}{
		{"idle, after start with an empty database", empty},
		{fmt.Sprintf("idle, after start with %d runs", finished+open), idle},
		{fmt.Sprintf("right after %d more runs through the endpoints", driven), after},
		{fmt.Sprintf("idle again after the %d runs (%s without work)", driven, 2*idleRelease+time.Second), rested},
	} {
		m := row.m
		mt.row(row.when, fmtMB(m.rss), fmtMB(m.anon), fmtMB(m.file), fmtMB(m.db), fmtMB(m.heap), strconv.Itoa(m.goroutines), fmtMB(m.peak))
	}
	s.value("rss_idle_bytes", float64(idle.rss))
	s.value("rss_after_runs_bytes", float64(after.rss))
	s.value("rss_rested_after_runs_bytes", float64(rested.rss))
	s.value("goroutines_after_runs", float64(after.goroutines))
	s.check("RSS idle", "< 50 MB", fmtMB(idle.rss), idle.rss < 50<<20)
	s.check(fmt.Sprintf("RSS idle after %d runs", driven), "< 50 MB", fmtMB(rested.rss), rested.rss < 50<<20)

	et := s.table("Runs driven through the binary's endpoints (signed commands and Approve clicks, as Slack sends them)",
		"runs", "senders", "elapsed", "runs/s end to end", "succeeded", "errors logged", "SIGTERM to exit")
	et.row(strconv.Itoa(driven), strconv.Itoa(dr.senders), fmtDur(dr.elapsed), fmt.Sprintf("%.1f", float64(driven)/dr.elapsed.Seconds()),
		strconv.Itoa(dr.succeeded), strconv.Itoa(p.errorLines()), fmtDur(stopTook))
	s.value("driven_runs_per_s", roundTo(float64(driven)/dr.elapsed.Seconds(), 2))
	s.note("The history is %d copies of a real finished run (its run record and %d audit events) and %d runs waiting at the authentik gate, whose Slack messages exist; "+
		"the bot refreshes those messages at start, after /readyz. Each driven run is one signed /sso-setup new and two signed Approve clicks, sent when the button shows on the run's message in the Slack fake. "+
		"VmRSS counts the pages of the memory-mapped database (and of the binary) that were read: page cache the kernel may drop at any time, which ssobot also takes out of its resident set once idle (Store.ReleaseMapped, with the heap's release); RssAnon is the memory ssobot itself holds.",
		finished, len(tmplEvents), open)
	if p.errorLines() > 0 {
		s.note("ssobot logged errors: %s", p.firstError())
	}
	return nil
}

// benchTemplateRun is one real, finished run and its audit log.
func benchTemplateRun(ctx context.Context) (*workflow.Run, []workflow.Event, error) {
	e, err := newBenchEnv(ctx, benchEnvOptions{AutoApprove: true})
	if err != nil {
		return nil, nil, err
	}
	defer e.Close()
	r, err := benchSerialRun(ctx, e, "Grafana")
	if err != nil {
		return nil, nil, err
	}
	run, err := e.app.engine.Get(ctx, r.id)
	if err != nil {
		return nil, nil, err
	}
	events, err := e.app.engine.Events(ctx, r.id)
	return run, events, err
}

// benchFakes are the three systems for a child process.
type benchFakes struct {
	ak       *authentiktest.Server
	cf       *cloudflaretest.Server
	sl       *slacktest.Server
	secret   string
	dir      string
	certFile string

	calls    atomic.Int64 // Slack calls
	stopFeed func()
	feedDone chan struct{}
	mu       sync.Mutex
	onSlack  func(slacktest.Call)
}

func newBenchFakes() (*benchFakes, error) {
	f := &benchFakes{
		ak:       authentiktest.New(authentiktest.WithValidation()),
		cf:       cloudflaretest.New(demoAccountID, cloudflaretest.WithTeam(demoTeam), cloudflaretest.WithoutContract()),
		sl:       slacktest.NewServer(slacktest.WithoutHistory()),
		secret:   randomHex(16),
		feedDone: make(chan struct{}),
	}
	f.sl.AddUser(slacktest.User{ID: benchRequester, Name: "alice"})
	f.sl.AddUser(slacktest.User{ID: benchApprover, Name: "bob"})
	f.sl.AddChannel(benchChannel, "platform", true)
	feed, stop := f.sl.Subscribe()
	f.stopFeed = stop
	go func() {
		defer close(f.feedDone)
		for c := range feed {
			f.calls.Add(1)
			f.mu.Lock()
			fn := f.onSlack
			f.mu.Unlock()
			if fn != nil {
				fn(c)
			}
		}
	}()
	var err error
	if f.dir, err = os.MkdirTemp("", "ssobot-bench-restart-"); err != nil {
		f.Close()
		return nil, err
	}
	f.certFile = filepath.Join(f.dir, "authentik-ca.pem")
	if err := os.WriteFile(f.certFile, f.ak.CertPEM(), 0o600); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func (f *benchFakes) Close() {
	f.ak.Close()
	f.cf.Close()
	f.sl.Close()
	if f.stopFeed != nil {
		f.stopFeed()
		<-f.feedDone
	}
	if f.dir != "" {
		os.RemoveAll(f.dir)
	}
}

// env configures ssobot serve against the fakes, as an operator would;
// authentik's certificate is trusted through SSL_CERT_FILE.
func (f *benchFakes) env(db string) []string {
	return []string{
		"SSL_CERT_FILE=" + f.certFile,
		"SLACK_BOT_TOKEN=" + f.sl.BotToken(),
		"SLACK_SIGNING_SECRET=" + f.secret,
		"SLACK_API_URL=" + f.sl.APIURL(),
		"AUTHENTIK_URL=" + f.ak.URL(),
		"AUTHENTIK_TOKEN=" + f.ak.Token(),
		"CLOUDFLARE_API_TOKEN=" + f.cf.Token(),
		"CLOUDFLARE_ACCOUNT_ID=" + demoAccountID,
		"CLOUDFLARE_BASE_URL=" + f.cf.URL(),
		"SSOBOT_APPROVERS=" + benchApprover,
		"SSOBOT_DB=" + db,
		"SSOBOT_LISTEN=127.0.0.1:0",
		"SSOBOT_ADMIN_LISTEN=127.0.0.1:0",
	}
}

// settle waits until the Slack fake has seen no call for quiet.
func (f *benchFakes) settle(ctx context.Context, quiet time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	last, since := f.calls.Load(), time.Now()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return fmt.Errorf("ssobot's Slack traffic did not settle: %w", ctx.Err())
		}
		if n := f.calls.Load(); n != last {
			last, since = n, time.Now()
		} else if time.Since(since) >= quiet {
			return nil
		}
	}
}

// benchHistory writes finished and open runs made from the template with
// the store's API and returns the file, the highest run ID and the
// database's size (the file is longer: see store.Store.Size). The open
// runs, and the newest finished ones the bot refreshes at start, get a
// real message in the Slack fake.
func benchHistory(ctx context.Context, f *benchFakes, tmpl *workflow.Run, tmplEvents []workflow.Event, finished, open int) (_ string, _ int64, size int64, _ error) {
	dir := "/dev/shm"
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		dir = ""
	}
	tmp, err := os.MkdirTemp(dir, "ssobot-bench-history-")
	if err != nil {
		tmp, err = os.MkdirTemp("", "ssobot-bench-history-")
		if err != nil {
			return "", 0, 0, err
		}
	}
	path := filepath.Join(tmp, "ssobot.db")
	st, err := store.Open(path, store.Options{})
	if err != nil {
		return "", 0, 0, err
	}
	defer st.Close()

	client := slack.New(f.sl.BotToken(), slack.OptionAPIURL(f.sl.APIURL()))
	total := finished + open
	// A run waits at a gate at most the approval TTL (24 h by default), so
	// the open runs are among the recent ones: every other run of the
	// newest 2 × open, the others finished.
	recent := total - min(2*open, total)
	madeOpen := 0
	gateOpened := 0
	for i, ev := range tmplEvents {
		if ev.Type == workflow.EventGateOpened {
			gateOpened = i + 1
			break
		}
	}
	now := time.Now().UTC()
	var maxID int64
	for i := range total {
		isOpen := i >= recent && (i-recent)%2 == 1 && madeOpen < open
		r := tmpl.Clone()
		name := fmt.Sprintf("App %d", i)
		slug := fmt.Sprintf("app-%d", i)
		created := now.Add(-time.Duration(total-i) * 30 * time.Minute)
		r.Request.ApplicationName, r.Params.ApplicationName = name, name
		r.Request.ApplicationSlug, r.Params.ApplicationSlug = slug, slug
		r.Params.ProviderName = "Provider for " + name
		r.Params.LoginMethodName = "authentik " + name
		r.Request.LoginMethodName = r.Params.LoginMethodName
		r.Params.ClientID = randomHex(20)
		r.Resources = workflow.Resources{AuthentikProviderID: i + 1, AuthentikApplicationSlug: slug, CloudflareIdentityProviderID: fmt.Sprintf("%08x-0000-4000-8000-%012x", i+1, i+1)}
		r.CreatedAt, r.UpdatedAt = created, created.Add(3*time.Minute)
		events := make([]workflow.Event, 0, len(tmplEvents))
		for _, ev := range tmplEvents {
			ev.RunID, ev.Seq = 0, 0
			ev.At = created.Add(ev.At.Sub(tmpl.CreatedAt))
			events = append(events, ev)
		}
		if isOpen {
			madeOpen++
			benchReopen(r, created)
			events = events[:gateOpened]
			// The bot that ran it recorded the gate's call as posted (the
			// store numbers a run's events from 1).
			r.Delivered = uint64(len(events))
		}
		if isOpen || i >= total-2*catchUpBenchRecent {
			_, ts, err := client.PostMessageContext(ctx, benchChannel, slack.MsgOptionText("SSO setup: "+name, false))
			if err != nil {
				return "", 0, 0, fmt.Errorf("post the message of a seeded run: %w", err)
			}
			r.MessageRef = benchChannel + "|" + ts
		} else {
			r.MessageRef = benchChannel + "|" + fmt.Sprintf("%d.%06d", created.Unix(), i%1_000_000)
		}
		r.ID, r.Version = 0, 0
		if err := st.CreateRun(ctx, r, events...); err != nil {
			return "", 0, 0, err
		}
		maxID = r.ID
	}
	size, err = st.Size()
	return path, maxID, size, err
}

// catchUpBenchRecent covers the recent finished runs the bot refreshes at start.
const catchUpBenchRecent = 20

// benchReopen turns a finished run back into one waiting at the authentik
// gate: preflight done, nothing created.
func benchReopen(r *workflow.Run, created time.Time) {
	r.State = workflow.StateAwaitingApproval
	r.Approvals, r.Error, r.DashboardURL = nil, "", ""
	r.Resources = workflow.Resources{}
	for i := range r.Steps {
		st := &r.Steps[i]
		switch {
		case st.Name == workflow.StepPreflight:
		case st.Name == workflow.GateAuthentik:
			st.Status, st.FinishedAt = workflow.StepWaiting, time.Time{}
			st.Deadline = time.Now().Add(defaultApprovalTTL)
			st.Nonce = randomHex(12)
		default:
			*st = workflow.Step{Name: st.Name, Kind: st.Kind, Status: workflow.StepPending}
		}
	}
	r.UpdatedAt = created.Add(time.Minute)
}

// benchDrive is what driving runs through the endpoints measured.
type benchDrive struct {
	senders   int
	elapsed   time.Duration
	succeeded int
}

// drive sends n signed /sso-setup new commands from a few senders, clicks
// Approve (signed) whenever a run newer than after shows the button, and
// waits until the admin API counts the runs finished.
func (f *benchFakes) drive(ctx context.Context, p *benchProc, n int, after int64, finishedBefore int) (benchDrive, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	senders := min(20, n)
	client := newBenchClient(senders * 2)
	defer client.CloseIdleConnections()
	var failed atomic.Int64
	var firstErr atomic.Value
	post := func(path string, body []byte) {
		req := slacktest.SignedRequest(p.slackURL+path, f.secret, body, time.Now())
		resp, err := client.Do(req.WithContext(ctx))
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("POST %s: %s", path, resp.Status)
			}
		}
		if err != nil && ctx.Err() == nil {
			failed.Add(1)
			firstErr.CompareAndSwap(nil, err)
		}
	}

	// Clicks: on every change of a run message, click its Approve button
	// once, as bob.
	clicks := make(chan []byte, 4096)
	f.mu.Lock()
	f.onSlack = clickOnButtons(f.sl, after, func(body []byte) {
		select {
		case clicks <- body:
		case <-ctx.Done():
		}
	})
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.onSlack = nil
		f.mu.Unlock()
	}()

	var wg sync.WaitGroup
	for range senders {
		wg.Go(func() {
			for {
				select {
				case body := <-clicks:
					post(slackInteractionsPath, body)
				case <-ctx.Done():
					return
				}
			}
		})
	}
	start := time.Now()
	var next atomic.Int64
	var cmdWG sync.WaitGroup
	for range senders {
		cmdWG.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(n) || ctx.Err() != nil {
					return
				}
				cmd := f.sl.NewSlashCommand(slashCommand, fmt.Sprintf("new Driven%d login=driven-%d", i, i), benchRequester, benchChannel)
				post(slackCommandsPath, []byte(slacktest.SlashCommandForm(cmd).Encode()))
			}
		})
	}
	cmdWG.Wait()

	// Done when the admin API counts every driven run as ended.
	var d benchDrive
	d.senders = senders
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	lastEnded, progressAt := -1, time.Now()
	for {
		counts, err := p.runCounts(ctx)
		if err != nil {
			cancel()
			wg.Wait()
			return d, err
		}
		ended := 0
		for _, st := range workflow.States {
			if st.Terminal() {
				ended += counts[string(st)]
			}
		}
		if ended >= finishedBefore+n {
			d.elapsed = time.Since(start)
			d.succeeded = counts[string(workflow.StateSucceeded)] - finishedBefore
			break
		}
		// A run that lost a click would wait a day: fail instead.
		if ended != lastEnded {
			lastEnded, progressAt = ended, time.Now()
		} else if time.Since(progressAt) > time.Minute {
			cancel()
			wg.Wait()
			return d, fmt.Errorf("driven runs stalled: %d of %d ended, none in the last minute (runs by state: %v; %s)", ended-finishedBefore, n, counts, p.lastFailure(context.WithoutCancel(ctx)))
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			wg.Wait()
			return d, fmt.Errorf("driven runs did not finish (%d of %d ended): %w", ended-finishedBefore, n, ctx.Err())
		}
		if failed.Load() > 0 {
			break
		}
	}
	cancel()
	wg.Wait()
	if d.succeeded < n {
		return d, fmt.Errorf("%d of %d driven runs succeeded; %s", d.succeeded, n, p.lastFailure(context.WithoutCancel(ctx)))
	}
	if failed.Load() > 0 {
		return d, fmt.Errorf("%d requests to ssobot failed, first: %v", failed.Load(), firstErr.Load())
	}
	return d, nil
}

// benchProc is a running ssobot serve.
type benchProc struct {
	cmd      *exec.Cmd
	start    time.Time
	ready    time.Duration
	slackURL string
	adminURL string
	done     chan error

	mu     sync.Mutex
	marks  map[string]time.Duration // log message → when first seen, since start
	addrs  map[string]string
	errs   []string
	seen   chan struct{}
	exited bool
}

func startBenchProc(bin string, env []string) (*benchProc, error) {
	cmd := exec.Command(bin, "serve")
	cmd.Env = env
	pipe, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	p := &benchProc{cmd: cmd, done: make(chan error, 1), marks: map[string]time.Duration{}, addrs: map[string]string{}, seen: make(chan struct{})}
	p.start = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s serve: %w", bin, err)
	}
	go func() {
		sc := bufio.NewScanner(pipe)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		for sc.Scan() {
			at := time.Since(p.start)
			var l struct {
				Level string `json:"level"`
				Msg   string `json:"msg"`
				Addr  string `json:"addr"`
			}
			_ = json.Unmarshal(sc.Bytes(), &l)
			p.mu.Lock()
			if _, ok := p.marks[l.Msg]; !ok && l.Msg != "" {
				p.marks[l.Msg] = at
			}
			if l.Addr != "" {
				p.addrs[l.Msg] = l.Addr
			}
			if l.Level == "ERROR" || (l.Msg == "" && len(sc.Bytes()) > 0) {
				p.errs = append(p.errs, sc.Text())
			}
			close(p.seen)
			p.seen = make(chan struct{})
			p.mu.Unlock()
		}
		err := cmd.Wait()
		p.mu.Lock()
		p.exited = true
		close(p.seen)
		p.seen = make(chan struct{})
		p.mu.Unlock()
		p.done <- err
	}()
	return p, nil
}

func (p *benchProc) pid() int { return p.cmd.Process.Pid }

// mark is when a log message was first seen, since exec.
func (p *benchProc) mark(msg string) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.marks[msg]
}

func (p *benchProc) errorLines() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.errs)
}

func (p *benchProc) firstError() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.errs) == 0 {
		return ""
	}
	return p.errs[0]
}

// waitReady waits for the listeners' log lines, then polls /readyz (the
// process is separate: there is nothing else to wait on) and records when
// it first answered 200.
func (p *benchProc) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		p.mu.Lock()
		admin, slackAddr, seen, exited := p.addrs["admin API listening"], p.addrs["slack endpoints listening"], p.seen, p.exited
		p.mu.Unlock()
		if admin != "" && slackAddr != "" {
			p.adminURL, p.slackURL = "http://"+admin, "http://"+slackAddr
			break
		}
		if exited {
			return fmt.Errorf("ssobot serve exited before listening: %s", p.firstError())
		}
		select {
		case <-seen:
		case <-ctx.Done():
			return fmt.Errorf("ssobot serve did not listen: %w", ctx.Err())
		}
	}
	client := &http.Client{Timeout: time.Second}
	for {
		resp, err := client.Get(p.adminURL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				p.ready = time.Since(p.start)
				return nil
			}
		}
		select {
		case <-time.After(time.Millisecond):
		case <-ctx.Done():
			return fmt.Errorf("ssobot serve never ready: %w", ctx.Err())
		}
	}
}

// benchMemory is the memory of the process at one moment.
type benchMemory struct {
	rss, anon, file, peak int64
	db                    int64 // RSS of the database's mapping (part of file)
	heap                  int64
	goroutines            int
}

func (p *benchProc) memory(ctx context.Context) (benchMemory, error) {
	var m benchMemory
	var err error
	for _, f := range []struct {
		name string
		v    *int64
	}{{"VmRSS", &m.rss}, {"RssAnon", &m.anon}, {"RssFile", &m.file}, {"VmHWM", &m.peak}} {
		if *f.v, err = procStatus(p.pid(), f.name); err != nil {
			return m, err
		}
	}
	if m.db, err = mappedRSS(p.pid(), ".db"); err != nil {
		return m, err
	}
	metrics, err := p.metrics(ctx, "go_memstats_heap_inuse_bytes", "go_goroutines")
	if err != nil {
		return m, err
	}
	m.heap, m.goroutines = int64(metrics["go_memstats_heap_inuse_bytes"]), int(metrics["go_goroutines"])
	return m, nil
}

// metrics reads unlabelled series from the admin API's /metrics.
func (p *benchProc) metrics(ctx context.Context, names ...string) (map[string]float64, error) {
	fams, err := scrapeMetrics(ctx, p.adminURL)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, name := range names {
		if ms := fams[name].GetMetric(); len(ms) > 0 {
			out[name] = metricValue(ms[0])
		}
	}
	return out, nil
}

// lastFailure describes the newest failed run, from the admin API.
func (p *benchProc) lastFailure(ctx context.Context) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.adminURL+"/api/runs?state=failed&limit=1", nil)
	if err != nil {
		return err.Error()
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	var list struct {
		Runs []struct {
			ID    int64  `json:"id"`
			Error string `json:"error"`
		} `json:"runs"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		return "the failed runs are unreadable: " + err.Error()
	}
	if len(list.Runs) == 0 {
		return "no run failed"
	}
	return fmt.Sprintf("run #%d failed: %s", list.Runs[0].ID, list.Runs[0].Error)
}

// runCounts reads ssobot_runs{state} from the admin API.
func (p *benchProc) runCounts(ctx context.Context) (map[string]int, error) {
	fams, err := scrapeMetrics(ctx, p.adminURL)
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, m := range fams["ssobot_runs"].GetMetric() {
		out[metricLabels(m)["state"]] = int(metricValue(m))
	}
	return out, nil
}

// stop sends SIGTERM and returns how long the process took to exit.
func (p *benchProc) stop(ctx context.Context) (time.Duration, error) {
	start := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return 0, err
	}
	select {
	case err := <-p.done:
		p.done <- err
		if err != nil {
			return 0, fmt.Errorf("ssobot serve exited: %w (%s)", err, p.firstError())
		}
		return time.Since(start), nil
	case <-ctx.Done():
		p.kill()
		return 0, ctx.Err()
	case <-time.After(30 * time.Second):
		p.kill()
		return 0, errors.New("ssobot serve did not exit within 30s of SIGTERM")
	}
}

// kill ends the process if it still runs.
func (p *benchProc) kill() {
	p.mu.Lock()
	exited := p.exited
	p.mu.Unlock()
	if !exited {
		_ = p.cmd.Process.Kill()
	}
}

// procStatus reads a size field (kB) of /proc/<pid>/status, in bytes.
func procStatus(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("memory of ssobot: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			f := strings.Fields(v)
			if len(f) == 0 {
				break
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				break
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("memory of ssobot: no %s in /proc/%d/status", field, pid)
}

// mappedRSS sums the resident memory of the process's mappings of files
// whose path ends in suffix, from /proc/<pid>/smaps.
func mappedRSS(pid int, suffix string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		return 0, fmt.Errorf("mappings of ssobot: %w", err)
	}
	var total int64
	in := false
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if !strings.HasSuffix(f[0], ":") { // a mapping's header: range perms offset dev inode [path]
			in = len(f) >= 6 && strings.HasSuffix(f[len(f)-1], suffix)
			continue
		}
		if in && f[0] == "Rss:" && len(f) >= 2 {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err == nil {
				total += kb << 10
			}
		}
	}
	return total, nil
}

// copyFile copies src to dst and syncs it.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
