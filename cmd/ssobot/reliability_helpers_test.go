//go:build !ssobot_server

package main

// Helpers shared by the process-level reliability tests (reliability_*_test.go):
// a running `ssobot serve` whose every output byte is kept, fakes that count
// the faults they inject, and a scanner for leaked secrets.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ssobot/ssobot/bot/slacktest"
	"github.com/ssobot/ssobot/workflow/authentik/authentiktest"
	"github.com/ssobot/ssobot/workflow/cloudflare/cloudflaretest"
	"github.com/ssobot/ssobot/workflow/workflowtest"
)

// relProc is one `ssobot serve` process. Unlike startServe it keeps stdout
// as well as stderr, never fails the test by itself (a killed process is
// expected), and can be killed and waited for.
type relProc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has exited and its output is read
	err  error         // cmd.Wait's error; read after done

	mu    sync.Mutex
	out   bytes.Buffer      // stderr, then stdout appended at exit
	addrs map[string]string // log message → addr
	seen  chan struct{}     // closed and replaced on every log line
}

// relStart starts `ssobot serve` with exactly env as its environment.
func relStart(t *testing.T, env map[string]string) (*relProc, error) {
	t.Helper()
	cmd := exec.Command(binary(t), "serve")
	for _, k := range slices.Sorted(maps.Keys(env)) {
		cmd.Env = append(cmd.Env, k+"="+env[k])
	}
	stdout := &workflowtest.Buffer{} // written by exec's copying goroutine
	cmd.Stdout = stdout
	pipe, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	p := &relProc{cmd: cmd, done: make(chan struct{}), addrs: map[string]string{}, seen: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		// A goroutine dump (SIGQUIT) or a long log line must not stop the
		// reading: the process would block on a full pipe.
		r := bufio.NewReaderSize(pipe, 1<<16)
		for {
			line, err := r.ReadBytes('\n')
			if len(line) > 0 {
				var l struct {
					Msg  string `json:"msg"`
					Addr string `json:"addr"`
				}
				_ = json.Unmarshal(line, &l)
				p.mu.Lock()
				p.out.Write(line)
				if l.Addr != "" {
					p.addrs[l.Msg] = l.Addr
				}
				close(p.seen)
				p.seen = make(chan struct{})
				p.mu.Unlock()
			}
			if err != nil {
				break
			}
		}
		p.err = cmd.Wait()
		p.mu.Lock()
		p.out.WriteString(stdout.String())
		close(p.seen)
		p.seen = make(chan struct{})
		p.mu.Unlock()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
	})
	return p, nil
}

// output is everything the process wrote so far (all of it once done).
func (p *relProc) output() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return bytes.Clone(p.out.Bytes())
}

// addr waits for the log line announcing a listener.
func (p *relProc) addr(ctx context.Context, msg string) (string, error) {
	for {
		p.mu.Lock()
		a, seen := p.addrs[msg], p.seen
		p.mu.Unlock()
		if a != "" {
			return a, nil
		}
		select {
		case <-seen:
		case <-p.done:
			p.mu.Lock()
			a = p.addrs[msg]
			p.mu.Unlock()
			if a != "" {
				return a, nil
			}
			return "", fmt.Errorf("ssobot exited (%v) before logging %q", p.err, msg)
		case <-ctx.Done():
			return "", fmt.Errorf("waiting for %q: %w", msg, ctx.Err())
		}
	}
}

// kill sends SIGKILL and waits until the process is gone.
func (p *relProc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// wait waits for the process to exit and returns its exit code (-1 when
// killed by a signal).
func (p *relProc) wait(ctx context.Context) (int, error) {
	select {
	case <-p.done:
	case <-ctx.Done():
		return 0, fmt.Errorf("waiting for ssobot to exit: %w", ctx.Err())
	}
	var exit *exec.ExitError
	switch {
	case p.err == nil:
		return 0, nil
	case errors.As(p.err, &exit):
		return exit.ExitCode(), nil
	}
	return 0, p.err
}

// relServer is a started serve process with its endpoints.
type relServer struct {
	*relProc
	slackURL string
	adminURL string
}

// relServe starts serve and waits until its engine is ready. On failure
// the process (killed) is returned too, for its output.
func relServe(ctx context.Context, t *testing.T, env map[string]string) (*relServer, error) {
	t.Helper()
	p, err := relStart(t, env)
	if err != nil {
		return nil, err
	}
	s := &relServer{relProc: p}
	fail := func(err error) (*relServer, error) {
		p.kill()
		return s, err
	}
	slackAddr, err := p.addr(ctx, "slack endpoints listening")
	if err != nil {
		return fail(err)
	}
	adminAddr, err := p.addr(ctx, "admin API listening")
	if err != nil {
		return fail(err)
	}
	s.slackURL, s.adminURL = "http://"+slackAddr, "http://"+adminAddr
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if resp, err := relHTTP.Get(s.adminURL + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s, nil
			}
		}
		select {
		case <-tick.C:
		case <-p.done:
			return fail(fmt.Errorf("ssobot exited (%v) before it was ready", p.err))
		case <-ctx.Done():
			return fail(fmt.Errorf("waiting for /readyz: %w", ctx.Err()))
		}
	}
}

// relHTTP is the tests' client: bounded, so a request to a process killed
// mid-answer fails instead of hanging.
var relHTTP = &http.Client{Timeout: 10 * time.Second}

// relGet returns the body of a 200 answer.
func relGet(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := relHTTP.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", url, resp.Status, b)
	}
	return b, nil
}

// relPost sends a request signed like Slack's and returns the answer's body.
func relPost(url, secret string, body []byte) ([]byte, error) {
	resp, err := relHTTP.Do(slacktest.SignedRequest(url, secret, body, time.Now()))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("POST %s: %s: %s", url, resp.Status, b)
	}
	return b, nil
}

// faultCounter counts the faults the fakes report through their loggers,
// by system and kind.
type faultCounter struct {
	mu     sync.Mutex
	counts map[string]int
}

func newFaultCounter() *faultCounter { return &faultCounter{counts: map[string]int{}} }

func (c *faultCounter) add(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.counts[key]++
}

// snapshot returns a copy of the counts.
func (c *faultCounter) snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.counts)
}

func (c *faultCounter) total() int {
	n := 0
	for _, v := range c.snapshot() {
		n += v
	}
	return n
}

// faultHandler is a slog.Handler that counts the fakes' fault lines and
// drops everything else.
type faultHandler struct {
	c      *faultCounter
	system string
}

func (h faultHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h faultHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h faultHandler) WithGroup(string) slog.Handler            { return h }

func (h faultHandler) Handle(_ context.Context, r slog.Record) error {
	if !strings.Contains(r.Message, "fault") {
		return nil
	}
	kind, status := "", ""
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "kind":
			kind = a.Value.String()
		case "status":
			if a.Value.Int64() != 0 {
				status = " " + a.Value.String()
			}
		}
		return true
	})
	h.c.add(h.system + " " + kind + status)
	return nil
}

// newCountingFakes is newFakes with fault counting and random Slack tokens
// (the slacktest defaults are fixed strings, which would make a leak check
// on them weak).
func newCountingFakes(t *testing.T, cfOpts ...cloudflaretest.Option) (*fakes, *faultCounter) {
	t.Helper()
	faults := newFaultCounter()
	cfOpts = append([]cloudflaretest.Option{cloudflaretest.WithTeam("acme"),
		cloudflaretest.WithLogger(slog.New(faultHandler{faults, "cloudflare"}))}, cfOpts...)
	f := &fakes{
		ak: authentiktest.New(authentiktest.WithLogger(slog.New(faultHandler{faults, "authentik"}))),
		cf: cloudflaretest.New(testAccountID, cfOpts...),
		sl: slacktest.NewServer(
			slacktest.WithBotToken("xoxb-"+randomHex(12)+"-"+randomHex(16)),
			slacktest.WithAppToken("xapp-1-"+randomHex(12)+"-"+randomHex(16))),
		secret: randomHex(16),
	}
	f.setUp(t)
	return f, faults
}

// allSecrets lists every credential and every client secret the fakes hold,
// with a name for the report (never the value).
func (f *fakes) allSecrets() map[string]string {
	s := map[string]string{
		"SLACK_BOT_TOKEN":      f.sl.BotToken(),
		"SLACK_APP_TOKEN":      f.sl.AppToken(),
		"SLACK_SIGNING_SECRET": f.secret,
		"AUTHENTIK_TOKEN":      f.ak.Token(),
		"CLOUDFLARE_API_TOKEN": f.cf.Token(),
	}
	for _, p := range f.ak.Providers() {
		s[fmt.Sprintf("client secret of provider %d", p.PK)] = p.ClientSecret
	}
	for _, idp := range f.cf.IdentityProviders() {
		if idp.Config.ClientSecret != "" {
			s[fmt.Sprintf("client secret of login method %s", idp.ID)] = idp.Config.ClientSecret
		}
	}
	return s
}

// leakProbe is one secret and the fragments searched for: the whole value
// and, for long values, its first and last 16 characters, so a truncated
// secret is found too.
type leakProbe struct {
	name      string
	fragments []string
}

func leakProbes(secrets map[string]string) []leakProbe {
	var out []leakProbe
	for _, name := range slices.Sorted(maps.Keys(secrets)) {
		v := secrets[name]
		if v == "" {
			continue
		}
		p := leakProbe{name: name, fragments: []string{v}}
		if len(v) >= 32 {
			p.fragments = append(p.fragments, v[:16], v[len(v)-16:])
		}
		out = append(out, p)
	}
	return out
}

// leaks returns "<secret> in <where>" for every probe found in data.
func leaks(probes []leakProbe, where string, data []byte) []string {
	var found []string
	for _, p := range probes {
		for _, frag := range p.fragments {
			if bytes.Contains(data, []byte(frag)) {
				found = append(found, fmt.Sprintf("%s in %s", p.name, where))
				break
			}
		}
	}
	return found
}

// slackCallsText is every Slack call the fake recorded as text: method,
// arguments (text, blocks, form values; the token excluded by Call.String)
// and the answer.
func slackCallsText(sl *slacktest.Server) []byte {
	var b bytes.Buffer
	for _, c := range sl.Calls() {
		b.WriteString(c.String())
		b.WriteByte(' ')
		if res, err := json.Marshal(c.Result); err == nil {
			b.Write(res)
		}
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// adminDump fetches /metrics, every page of /api/runs, /api/runs/{id} for
// each run, and /api/backup: everything the admin API can show.
func adminDump(ctx context.Context, adminURL string) (map[string][]byte, error) {
	out := map[string][]byte{}
	var err error
	if out["/metrics"], err = relGet(ctx, adminURL+"/metrics"); err != nil {
		return nil, err
	}
	if out["/api/backup"], err = relGet(ctx, adminURL+"/api/backup"); err != nil {
		return nil, err
	}
	before := ""
	for page := 0; ; page++ {
		u := adminURL + "/api/runs?limit=500" + before
		body, err := relGet(ctx, u)
		if err != nil {
			return nil, err
		}
		out[fmt.Sprintf("/api/runs page %d", page)] = body
		var list runList
		if err := json.Unmarshal(body, &list); err != nil {
			return nil, fmt.Errorf("decode /api/runs: %w", err)
		}
		if len(list.Runs) == 0 {
			break
		}
		for _, r := range list.Runs {
			path := fmt.Sprintf("/api/runs/%d", r.ID)
			if out[path], err = relGet(ctx, adminURL+path); err != nil {
				return nil, err
			}
		}
		before = fmt.Sprintf("&before=%d", list.Runs[len(list.Runs)-1].ID)
	}
	return out, nil
}
