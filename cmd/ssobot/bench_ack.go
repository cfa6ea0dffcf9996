//go:build !ssobot_server

package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/ssobot/ssobot/bot"
	"github.com/ssobot/ssobot/bot/slacktest"
	"github.com/ssobot/ssobot/workflow"
)

// benchAck measures how fast the Slack endpoints answer, with 1, 50 and 200
// concurrent senders each sending its next request as soon as the previous
// one is answered, next to a floor measured the same way in the same run: a
// bare handler that reads the body and checks the signature.
func benchAck(ctx context.Context, b *bench, s *benchSection) error {
	e, err := newBenchEnv(ctx, benchEnvOptions{})
	if err != nil {
		return err
	}
	defer e.Close()

	// A run for status requests and clicks: its authentik gate is approved,
	// so the Approve clicks below are refused ("already approved by…"),
	// which exercises verify, parse, the hand-off and the engine's refusal.
	run, err := e.start(ctx, "Grafana")
	if err != nil {
		return err
	}
	if err := e.settle(ctx, 50*time.Millisecond); err != nil {
		return err
	}
	run, err = e.app.engine.Get(ctx, run.ID)
	if err != nil {
		return err
	}
	g := run.OpenGate()
	if g == nil {
		return fmt.Errorf("run %d is %s, not waiting for approval", run.ID, run.State)
	}
	channel, ts, _ := strings.Cut(run.MessageRef, "|")
	click, err := e.sl.ClickButton(channel, ts, bot.ActionApprove, benchApprover)
	if err != nil {
		return fmt.Errorf("the run's message: %w", err)
	}
	if _, err := e.app.engine.Decide(ctx, workflow.DecisionRequest{RunID: run.ID, Gate: g.Name, Nonce: g.Nonce, User: benchApprover, Decision: workflow.Approve}); err != nil {
		return err
	}
	if err := e.settle(ctx, 50*time.Millisecond); err != nil {
		return err
	}

	floor, err := newBenchFloor(e.secret)
	if err != nil {
		return err
	}
	defer floor.Close()
	sender, err := startBenchSender(ctx)
	if err != nil {
		return err
	}
	defer sender.Close()

	levels := pick(b, []int{1, 5, 10}, []int{1, 50, 200})
	target := levels[1] // the level the targets are stated for
	// Each level is measured in rounds, every kind and its floor in turn,
	// so that a slow moment of a shared machine hits all of them alike;
	// the figures pool the rounds. The level the targets are stated for
	// gets twice the rounds: a p99 over 50 requests in flight is about
	// the round's worst moments, and more of them make it, and the ratio
	// to the floor's, steadier.
	rounds := pick(b, 1, 5)
	roundsAt := map[int]int{levels[0]: rounds, target: 2 * rounds, levels[2]: rounds}
	counts := map[int][2]int{ // senders -> {requests per round for cheap kinds, for new}
		1:         {pick(b, 5, 200), pick(b, 2, 40)},
		levels[1]: {pick(b, 10, 4000), pick(b, 5, 1000)},
		levels[2]: {pick(b, 20, 8000), pick(b, 10, 1000)},
	}
	newSeq := 0
	kinds := []benchAckKind{
		{name: "/slack/commands status", key: "command_status", want: "Grafana", gen: func(i int) ([]byte, string) {
			return benchCommandBody(e, fmt.Sprintf("status %d", run.ID)), slackCommandsPath
		}},
		{name: "/slack/commands new", key: "command_new", want: "started", isNew: true, gen: func(i int) ([]byte, string) {
			newSeq++
			return benchCommandBody(e, fmt.Sprintf("new Bench %d", newSeq)), slackCommandsPath
		}},
		{name: "/slack/interactions Approve", key: "interaction_approve", want: "", gen: func(i int) ([]byte, string) {
			a := click
			a.TriggerID = fmt.Sprintf("%d.%d.bench", i, time.Now().UnixNano())
			a.ResponseURL = e.sl.NewResponseURLFor(channel, ts, benchApprover)
			return []byte(slacktest.BlockActionsPayload(a).Encode()), slackInteractionsPath
		}},
	}

	t := s.table(fmt.Sprintf("Acknowledgement latency (closed loop: each sender sends its next request when answered; %d rounds, %d at %d senders, each endpoint next to its floor)", rounds, roundsAt[target], target),
		"endpoint", "senders", "requests", "p50", "p99", "max", "req/s", "floor p50", "floor p99", "p99 ÷ floor p99", "CPU per request", "floor's", "errors")
	type pooled struct {
		lat       []time.Duration
		elapsed   time.Duration
		bad       int
		cpu       time.Duration // this process's (the server's), while the requests were sent
		senderCPU time.Duration // the sender process's
		sent      int           // requests sent, warm-ups included
	}
	results := map[string]map[int]benchStats{}
	floors := map[string]map[int]benchStats{}
	for _, level := range levels {
		got := map[string]*pooled{}
		for round := range roundsAt[level] {
			for _, k := range kinds {
				n := counts[level][0]
				if k.isNew {
					n = counts[level][1]
				}
				// The floor reads and verifies requests like this kind's, on
				// its own listener, just before the endpoint is measured.
				for _, floorRun := range []bool{true, false} {
					name, base := k.name, e.slackURL
					if floorRun {
						name, base = "floor "+k.key, floor.url
					}
					b.logf("   round %d/%d: %s, %d senders, %d requests", round+1, roundsAt[level], name, level, n)
					// The floor answers 2–5 times faster: on 4 times the
					// requests it runs about as long as the endpoint, and
					// meets as many of the machine's pauses (each one
					// delays every request in flight).
					count := n
					if floorRun {
						count = 4 * n
					}
					want := k.want
					if floorRun {
						want = ""
					}
					// Bodies and signatures are made before the clock starts.
					job := benchJob{Host: strings.TrimPrefix(base, "http://"), Senders: level, Want: want, Reqs: signedRequests(e.secret, level+count, k.gen)}
					load, cpu, err := sender.run(job)
					if err != nil {
						return err
					}
					if load.Err != "" { // set only when every request failed
						return fmt.Errorf("%s: every request failed: %s", name, load.Err)
					}
					// Background work a request started (runs, replies)
					// must not leak into the next measurement.
					if err := e.settle(ctx, 100*time.Millisecond); err != nil {
						return err
					}
					p := got[name]
					if p == nil {
						p = &pooled{}
						got[name] = p
					}
					p.lat = append(p.lat, load.Lat...)
					p.elapsed += load.Elapsed
					p.bad += load.Bad
					p.cpu += cpu
					p.senderCPU += load.CPU
					p.sent += level + count
				}
			}
		}
		for _, k := range kinds {
			st, f := stats(got[k.name].lat), stats(got["floor "+k.key].lat)
			if results[k.name] == nil {
				results[k.name], floors[k.name] = map[int]benchStats{}, map[int]benchStats{}
			}
			results[k.name][level], floors[k.name][level] = st, f
			p, fp := got[k.name], got["floor "+k.key]
			cpu, floorCPU := p.cpu/time.Duration(max(p.sent, 1)), fp.cpu/time.Duration(max(fp.sent, 1))
			t.row(k.name, strconv.Itoa(level), strconv.Itoa(st.N), fmtDur(st.P50), fmtDur(st.P99), fmtDur(st.Max),
				fmt.Sprintf("%.0f", float64(len(p.lat))/p.elapsed.Seconds()), fmtDur(f.P50), fmtDur(f.P99),
				fmt.Sprintf("%.2f", float64(st.P99)/float64(max(f.P99, 1))), fmtMicros(cpu), fmtMicros(floorCPU), strconv.Itoa(p.bad+fp.bad))
			s.value(fmt.Sprintf("%s_%d_cpu_us", k.key, level), roundTo(float64(cpu)/float64(time.Microsecond), 1))
			s.value(fmt.Sprintf("%s_%d_floor_cpu_us", k.key, level), roundTo(float64(floorCPU)/float64(time.Microsecond), 1))
			s.value(fmt.Sprintf("%s_%d_sender_cpu_us", k.key, level), roundTo(float64(p.senderCPU/time.Duration(max(p.sent, 1)))/float64(time.Microsecond), 1))
			s.value(fmt.Sprintf("%s_%d_p99_ms", k.key, level), ms(st.P99))
			s.value(fmt.Sprintf("%s_%d_p50_ms", k.key, level), ms(st.P50))
			s.value(fmt.Sprintf("%s_%d_floor_p99_ms", k.key, level), ms(f.P99))
		}
	}
	for _, k := range kinds {
		st, f := results[k.name][target], floors[k.name][target].P99
		s.check(fmt.Sprintf("%s p99, %d senders", k.name, target), "< 50ms", fmtDur(st.P99), st.P99 < 50*time.Millisecond)
		s.check(fmt.Sprintf("%s p99 vs floor, %d senders", k.name, target), "≤ 2 × floor p99", fmt.Sprintf("%.2f × (%s)", float64(st.P99)/float64(max(f, 1)), fmtDur(f)), st.P99 <= 2*f)
	}
	s.note("The floor is a bare handler on its own listener in the same process: it reads the body and calls bot.Verify, nothing else; it is sent requests like the endpoint's (same sizes, same signatures). " +
		"Each request is a distinct signed body (Slack never resends one; the replay guard would short-cut a copy). " +
		"The senders run in a process of their own (this executable again), as Slack's servers are elsewhere: inside the measured process they would share its scheduler and its network poller with the server, and be counted in its CPU. " +
		"Each sender writes its requests and reads the answers on its own keep-alive connection, with no client library in between. " +
		"The sender process, server, engine, bbolt and fakes share the machine's cores. " +
		"CPU per request is the measured process's CPU time (user and system: server, engine, store, fakes) while a kind's requests were being sent, divided by the requests; the sender process's is in the JSON (…_sender_cpu_us). " +
		"\"new\" commits the run (one synced bbolt commit, shared by the runs started at the same moment) before answering and starts its preflight; the Approve clicks are answered at once and decided in the background (refused: the gate was already approved, which records the refusal in the audit log). " +
		"Background work (steps, Slack updates, decisions) yields to the requests being answered (bot.Foreground).")
	e.logs.report(s, "ack")
	return nil
}

// benchAckKind is one kind of request the load generator sends.
type benchAckKind struct {
	name  string
	key   string // in the JSON values
	isNew bool
	want  string // the answer must contain this
	gen   func(i int) (body []byte, path string)
}

// benchCommandBody is alice's slash command as Slack sends it.
func benchCommandBody(e *benchEnv, text string) []byte {
	cmd := e.sl.NewSlashCommand(slashCommand, text, benchRequester, benchChannel)
	return []byte(slacktest.SlashCommandForm(cmd).Encode())
}

// benchFloor is the floor of the acknowledgement path: an HTTP server that
// reads the body and verifies the signature, and nothing else.
type benchFloor struct {
	srv *http.Server
	url string
}

func newBenchFloor(secret string) (*benchFloor, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	sec := workflow.NewSecret(secret)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, bot.DefaultMaxBodyBytes))
		if err != nil {
			http.Error(w, "cannot read request body", http.StatusBadRequest)
			return
		}
		if err := bot.Verify(r.Header, body, sec, time.Now()); err != nil {
			http.Error(w, "invalid signature", http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	// The same server settings as serve's Slack listener.
	f := &benchFloor{
		srv: &http.Server{Handler: h, ReadHeaderTimeout: readHeaderTimeout, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute},
		url: "http://" + ln.Addr().String(),
	}
	// A failing listener shows as failed requests in the figures.
	go func() { _ = f.srv.Serve(ln) }()
	return f, nil
}

func (f *benchFloor) Close() error { return f.srv.Close() }
