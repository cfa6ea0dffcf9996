//go:build !ssobot_server

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ssobot/ssobot/bot"
	"github.com/ssobot/ssobot/bot/slacktest"
)

// The ack section's load generator runs in a process of its own, as Slack's
// servers are elsewhere: senders inside the measured process would share its
// scheduler with the server, its run queues and its poller, so that an
// answer written is noticed only when a CPU runs out of other goroutines,
// and the senders' own goroutines and garbage would be counted as the
// server's. The bench starts this executable again with benchSenderEnv set;
// it reads jobs (gob) on its stdin and writes each one's result on its
// stdout until its stdin closes.
const benchSenderEnv = "SSOBOT_BENCH_SENDER"

// benchRequest is one signed request, as Slack sends it.
type benchRequest struct {
	Path, TS, Sig string
	Body          []byte
}

// benchJob is one measurement: its requests, the first Senders of them
// warm-ups (one per sender, opening its connection, not measured).
type benchJob struct {
	Host    string // host:port
	Senders int
	Want    string // a right answer's body contains it ("": any 200 is right)
	Reqs    []benchRequest
}

// benchLoadResult is what the sender measured.
type benchLoadResult struct {
	Lat     []time.Duration // each measured request's
	Elapsed time.Duration   // from the first measured request sent to the last answered
	Bad     int             // wrong answers
	CPU     time.Duration   // the sender process's, while it sent the job
	Err     string          // the first error, when every request failed
}

// benchChild runs the sender process when this process is one (see
// benchSenderEnv), and reports whether it was.
func benchChild() (int, bool) {
	if os.Getenv(benchSenderEnv) != "1" {
		return 0, false
	}
	return benchSenderMain(os.Stdin, os.Stdout, os.Stderr), true
}

// benchSenderMain is the sender process's main: it runs jobs from stdin
// until stdin ends.
func benchSenderMain(stdin io.Reader, stdout, stderr io.Writer) int {
	dec, enc := gob.NewDecoder(bufio.NewReader(stdin)), gob.NewEncoder(stdout)
	for {
		var job benchJob
		if err := dec.Decode(&job); errors.Is(err, io.EOF) {
			return exitOK
		} else if err != nil {
			fmt.Fprintf(stderr, "ssobot bench sender: read job: %v\n", err)
			return exitFailure
		}
		if err := enc.Encode(sendJob(context.Background(), job)); err != nil {
			fmt.Fprintf(stderr, "ssobot bench sender: write result: %v\n", err)
			return exitFailure
		}
	}
}

// benchSender is the parent's handle on a sender process.
type benchSender struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	dec    *gob.Decoder
	enc    *gob.Encoder
	buf    bytes.Buffer // a job's encoding, written to the pipe at once
	stderr bytes.Buffer // written by exec's copying goroutine until the process is waited for
	waited bool
}

// startBenchSender starts this executable as a sender process.
func startBenchSender(ctx context.Context) (*benchSender, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("sender process: %w", err)
	}
	s := &benchSender{cmd: exec.CommandContext(ctx, exe)}
	s.cmd.Env = append(os.Environ(), benchSenderEnv+"=1")
	s.cmd.Stderr = &s.stderr
	if s.stdin, err = s.cmd.StdinPipe(); err != nil {
		return nil, fmt.Errorf("sender process: %w", err)
	}
	out, err := s.cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("sender process: %w", err)
	}
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("sender process: %w", err)
	}
	s.dec, s.enc = gob.NewDecoder(bufio.NewReader(out)), gob.NewEncoder(&s.buf)
	return s, nil
}

// run has the sender process send job and returns what it measured, and
// the CPU this process used meanwhile.
func (s *benchSender) run(job benchJob) (benchLoadResult, time.Duration, error) {
	// Encoded before the clock starts, so that only the server is counted.
	s.buf.Reset()
	if err := s.enc.Encode(job); err != nil {
		return benchLoadResult{}, 0, fmt.Errorf("sender process: %w", err)
	}
	cpu0 := processCPU()
	if _, err := s.stdin.Write(s.buf.Bytes()); err != nil {
		return benchLoadResult{}, 0, s.failed(err)
	}
	var res benchLoadResult
	if err := s.dec.Decode(&res); err != nil {
		return benchLoadResult{}, 0, s.failed(err)
	}
	return res, processCPU() - cpu0, nil
}

// failed ends the sender process after err, and adds what it said on its
// way out: its stderr is complete only once it has been waited for.
func (s *benchSender) failed(err error) error {
	if !s.waited {
		_ = s.cmd.Process.Kill() // it may have ended already
		_ = s.cmd.Wait()
		s.waited = true
	}
	if msg := strings.TrimSpace(s.stderr.String()); msg != "" {
		return fmt.Errorf("sender process: %w (%s)", err, msg)
	}
	return fmt.Errorf("sender process: %w", err)
}

// Close ends the sender process: it exits when its stdin ends.
func (s *benchSender) Close() error {
	if s.waited {
		return nil
	}
	s.stdin.Close()
	err := s.cmd.Wait()
	s.waited = true
	if err != nil {
		return s.failed(err)
	}
	return nil
}

// signedRequests makes n requests (bodies and paths from gen), signed now.
func signedRequests(secret string, n int, gen func(i int) ([]byte, string)) []benchRequest {
	now := time.Now()
	ts := strconv.FormatInt(now.Unix(), 10)
	reqs := make([]benchRequest, n)
	for i := range reqs {
		body, path := gen(i)
		reqs[i] = benchRequest{Path: path, Body: body, TS: ts, Sig: slacktest.Sign(secret, now, body)}
	}
	return reqs
}

// sendJob sends job's requests from job.Senders concurrent senders, each
// sending its next request as soon as the previous one is answered.
func sendJob(ctx context.Context, job benchJob) benchLoadResult {
	cpu0 := processCPU()
	var bad atomic.Int64
	var firstErr error
	var errOnce sync.Once
	fail := func(err error) { errOnce.Do(func() { firstErr = err }) }
	// send sends one request on the sender's connection and tells how long
	// the answer took and whether it was right.
	send := func(c *benchConn, r benchRequest) (time.Duration, bool) {
		start := time.Now()
		status, body, err := c.do(ctx, r)
		d := time.Since(start)
		if err != nil {
			fail(err)
			return d, false
		}
		return d, status == http.StatusOK && bytes.Contains(body, []byte(job.Want))
	}
	// Each sender's first request opens its connection and is not
	// measured; it then goes straight on to the measured ones, as a client
	// of Slack's would, without waiting for the other senders (a pause of
	// all senders at once would be a quiet moment no real load has).
	senders := min(job.Senders, len(job.Reqs))
	warm, measured := job.Reqs[:senders], job.Reqs[senders:]
	lat := make([]time.Duration, len(measured))
	var (
		next        atomic.Int64
		wg          sync.WaitGroup
		mu          sync.Mutex
		first, last time.Time
	)
	for w := range senders {
		wg.Go(func() {
			c := &benchConn{host: job.Host}
			defer c.Close()
			send(c, warm[w])
			for {
				i := int(next.Add(1) - 1)
				if i >= len(measured) || ctx.Err() != nil {
					return
				}
				start := time.Now()
				d, ok := send(c, measured[i])
				lat[i] = d
				if !ok {
					bad.Add(1)
				}
				mu.Lock()
				if first.IsZero() || start.Before(first) {
					first = start
				}
				if end := start.Add(d); end.After(last) {
					last = end
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	res := benchLoadResult{Lat: lat, Elapsed: last.Sub(first), Bad: int(bad.Load()), CPU: processCPU() - cpu0}
	if res.Bad == len(measured) && firstErr != nil {
		res.Err = firstErr.Error()
	}
	return res
}

// benchConn is one sender's keep-alive connection. The load generator
// speaks HTTP/1.1 on it directly: net/http's client adds two goroutines per
// connection and hands each request between three of them, scheduling work
// that shares the cores with the server being measured (real senders are
// Slack's servers, elsewhere).
type benchConn struct {
	host string
	conn net.Conn // nil until dialled, and after an error
	br   *bufio.Reader
	buf  []byte
}

func (c *benchConn) Close() {
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}

// do sends r, on a new connection after an error or a close, and reads the
// answer.
func (c *benchConn) do(ctx context.Context, r benchRequest) (status int, body []byte, err error) {
	if c.conn == nil {
		var d net.Dialer
		if c.conn, err = d.DialContext(ctx, "tcp", c.host); err != nil {
			return 0, nil, err
		}
		c.br = bufio.NewReader(c.conn)
	}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	if err := c.conn.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		return 0, nil, err
	}
	b := append(c.buf[:0], "POST "...)
	b = append(b, r.Path...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, c.host...)
	b = append(b, "\r\nContent-Type: application/x-www-form-urlencoded\r\n"+bot.HeaderTimestamp+": "...)
	b = append(b, r.TS...)
	b = append(b, "\r\n"+bot.HeaderSignature+": "...)
	b = append(b, r.Sig...)
	b = append(b, "\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(r.Body)), 10)
	b = append(b, "\r\n\r\n"...)
	b = append(b, r.Body...)
	c.buf = b
	if _, err := c.conn.Write(b); err != nil {
		return 0, nil, err
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return 0, nil, err
	}
	body, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return 0, nil, err
	}
	if resp.Close {
		c.Close()
	}
	return resp.StatusCode, body, nil
}
