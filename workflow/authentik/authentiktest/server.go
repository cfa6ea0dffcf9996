// Package authentiktest is a stateful fake of authentik's REST API and
// public OIDC endpoints, served over real TLS, for tests and the demo.
//
// It keeps flows, certificates, scope mappings, OAuth2 providers and
// applications in memory, answers with authentik's error shapes, and
// validates every API request and response against the OpenAPI contract
// when the contracts are found (see contracttest.Dir). Faults and latency
// can be injected to test retries.
package authentiktest

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/ssobot/ssobot/workflow/contracttest"
)

// Contract files the fake can validate against.
const (
	Contract2026_8  = "authentik-openapi-2026.8.yaml"
	Contract2026_11 = "authentik-openapi-2026.11.yaml"
)

// Option configures a Server.
type Option func(*config)

type config struct {
	contracts []string
	logger    *slog.Logger
	seed      int64
	seeded    bool
	after     func(time.Duration) <-chan time.Time
}

// WithValidation validates requests and responses against these contract
// files (default: the 2026.8 contract). With no files, validation is off.
func WithValidation(files ...string) Option {
	return func(c *config) { c.contracts = files }
}

// WithLogger logs one line per request (method, path, status; never bodies
// or headers).
func WithLogger(l *slog.Logger) Option {
	return func(c *config) { c.logger = l }
}

// WithTimer sets how the latency of SetLatency is waited out: after(d)
// returns a channel that receives once d has passed (default time.After). A
// test passes its own to see the delay asked for and end it on cue.
func WithTimer(after func(d time.Duration) <-chan time.Time) Option {
	return func(c *config) { c.after = after }
}

// WithSeed makes generated IDs, client IDs, secrets and the token repeatable.
func WithSeed(seed int64) Option {
	return func(c *config) { c.seed, c.seeded = seed, true }
}

// Server is a fake authentik. It is safe for concurrent use.
type Server struct {
	srv        *httptest.Server
	log        *slog.Logger
	validators []*contracttest.Validator
	done       chan struct{}
	closeOnce  sync.Once
	after      func(time.Duration) <-chan time.Time

	mu    sync.Mutex
	rng   *rand.Rand
	token string
	state

	version          string
	denied           map[string]bool
	ignoreSigningKey bool
	rewriteOIDC      func(kind string, doc map[string]any)
	ignoredFilters   map[string]bool

	faults     []*Fault
	faultRate  float64
	faultRNG   *rand.Rand
	faultKinds []FaultKind
	latency    time.Duration

	calls        contracttest.Recorder
	contractErrs []error
}

// New starts a fake authentik over HTTPS, seeded with the default flows,
// the self-signed certificate, the OAuth2 scope mappings, an admin user and
// an API token.
func New(opts ...Option) *Server {
	cfg := config{contracts: []string{Contract2026_8}, after: time.After}
	for _, o := range opts {
		o(&cfg)
	}
	if !cfg.seeded {
		cfg.seed = time.Now().UnixNano()
	}
	log := cfg.logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		log:     log,
		done:    make(chan struct{}),
		after:   cfg.after,
		rng:     newRand(cfg.seed),
		version: "2026.8",
		denied:  make(map[string]bool),
	}
	for _, f := range cfg.contracts {
		v, err := loadContract(f)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			// A clone without the contracts: serve unvalidated.
			log.Debug("authentik fake: contract not found, not validating", "contract", f)
		case err != nil:
			s.contractErrs = append(s.contractErrs, err)
		default:
			s.validators = append(s.validators, v)
		}
	}
	s.token = s.randString(60)
	s.seed()
	s.srv = httptest.NewUnstartedServer(s.calls.Handler(s))
	// Faults drop connections on purpose: keep net/http's complaints at debug.
	s.srv.Config.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelDebug)
	if cert, err := serverCert(); err == nil {
		s.srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	} // else httptest's own certificate
	s.srv.StartTLS()
	return s
}

// URL is the server's base URL, https://127.0.0.1:port.
func (s *Server) URL() string { return s.srv.URL }

// Token is the valid API token.
func (s *Server) Token() string { return s.token }

// Client returns an HTTP client that trusts the server's certificate.
func (s *Server) Client() *http.Client { return s.srv.Client() }

// CertPEM is the server's certificate, for SSL_CERT_FILE in subprocesses.
func (s *Server) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.srv.Certificate().Raw})
}

// Close stops the server, releasing requests held by faults or latency.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.done)
		s.srv.CloseClientConnections()
		s.srv.Close()
	})
}

// Validating lists the contract files requests are validated against;
// empty when the contracts were not found.
func (s *Server) Validating() []string {
	out := make([]string, 0, len(s.validators))
	for _, v := range s.validators {
		out = append(out, v.File())
	}
	return out
}

// ContractErrors returns every request or response that broke a contract.
func (s *Server) ContractErrors() []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]error(nil), s.contractErrs...)
}

// Spans returns when each answered request was served, in the order they arrived.
func (s *Server) Spans() []contracttest.Span { return s.calls.Spans() }

// CallCount is the number of requests served so far, cheaply: for polling.
func (s *Server) CallCount() int { return s.calls.Len() }

// Calls counts the requests seen with this method ("" for any) whose
// path and query contain pathContains.
func (s *Server) Calls(method, pathContains string) int {
	return s.calls.Count(method, pathContains, true)
}

// DenyPermission makes the calls needing perm (e.g. "view_flow",
// "add_oauth2provider") answer 403 as authentik does.
func (s *Server) DenyPermission(perm string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.denied[perm] = true
}

// SetSchemaVersion shapes responses like this authentik release: "2026.8"
// (default) or "2026.11", which adds fields older clients do not know and
// leaves out optional ones.
func (s *Server) SetSchemaVersion(v string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.version = v
}

// IgnoreSigningKey makes the server create providers without a signing key
// whatever the request says, as if the key had been dropped.
func (s *Server) IgnoreSigningKey() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ignoreSigningKey = true
}

// IgnoreFilters makes list endpoints answer as if these query filters
// (e.g. "client_id", "name") had not been given, as a server that does not
// know them would: clients must check what they get back.
func (s *Server) IgnoreFilters(keys ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ignoredFilters == nil {
		s.ignoredFilters = map[string]bool{}
	}
	for _, k := range keys {
		s.ignoredFilters[k] = true
	}
}

// RewriteOIDC passes every discovery document (kind "discovery") and JWKS
// (kind "jwks", its "keys" a []map[string]any) the server answers to fn,
// which may change it in place, as a misconfigured authentik or a proxy in
// front of it would serve them. fn runs with the server's lock held and must
// not call the Server. nil turns it off.
func (s *Server) RewriteOIDC(fn func(kind string, doc map[string]any)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rewriteOIDC = fn
}

// SetLatency delays every response by d.
func (s *Server) SetLatency(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latency = d
}

// response is a complete answer, built before it is validated and written.
type response struct {
	status int
	header http.Header
	body   []byte
}

func jsonResponse(status int, v any) response {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("authentiktest: encode response: %v", err))
	}
	return response{status: status, header: http.Header{"Content-Type": {"application/json"}}, body: b}
}

func detail(status int, msg string) response {
	return jsonResponse(status, map[string]string{"detail": msg})
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	s.mu.Lock()
	latency := s.latency
	f := s.pickFault(r)
	s.mu.Unlock()

	if latency > 0 && !s.wait(r.Context(), latency) {
		hijackReset(w) // released by Close or the client: no answer at all
		return
	}
	if f != nil {
		s.log.Debug("authentik fake: fault", "method", r.Method, "path", r.URL.Path, "kind", f.Kind)
		if s.fault(w, r, body, f) {
			return
		}
	}
	res := s.handle(r, body)
	s.log.Debug("authentik fake", "method", r.Method, "path", r.URL.Path, "status", res.status)
	for k, v := range res.header {
		w.Header()[k] = v
	}
	w.WriteHeader(res.status)
	_, _ = w.Write(res.body)
}

// wait sleeps for d unless the request or the server ends first.
func (s *Server) wait(ctx context.Context, d time.Duration) bool {
	select {
	case <-s.after(d):
		return true
	case <-ctx.Done():
		return false
	case <-s.done:
		return false
	}
}

func (s *Server) handle(r *http.Request, body []byte) response {
	switch {
	case strings.HasPrefix(r.URL.Path, "/api/v3/"):
		return s.handleAPI(r, body)
	case strings.HasPrefix(r.URL.Path, "/application/o/"):
		return s.handleOIDC(r)
	case r.URL.Path == "/":
		return response{status: http.StatusOK, header: http.Header{"Content-Type": {"text/html"}}, body: []byte("<html><title>authentik</title></html>")}
	}
	return detail(http.StatusNotFound, "Not found.")
}

// handleAPI validates the request, answers it, and validates the answer.
func (s *Server) handleAPI(r *http.Request, body []byte) response {
	for _, v := range s.validators {
		if err := v.ValidateRequest(r, body); err != nil {
			return s.contractError(err)
		}
	}
	res := s.api(r, body)
	for _, v := range s.validators {
		if err := v.ValidateResponse(r, body, res.status, res.header, res.body); err != nil {
			return s.contractError(err)
		}
	}
	return res
}

func (s *Server) contractError(err error) response {
	s.mu.Lock()
	s.contractErrs = append(s.contractErrs, err)
	s.mu.Unlock()
	s.log.Warn("authentik fake: contract violation", "err", err)
	return jsonResponse(http.StatusBadRequest, map[string][]string{"non_field_errors": {err.Error()}})
}

// hijackReset drops the connection without an answer, with a TCP reset
// where possible.
func hijackReset(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic("authentiktest: response writer cannot hijack")
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		return
	}
	raw := conn
	if tc, ok := conn.(*tls.Conn); ok {
		raw = tc.NetConn()
	}
	if tcp, ok := raw.(*net.TCPConn); ok {
		_ = tcp.SetLinger(0)
	}
	_ = raw.Close()
}

func (s *Server) randString(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	var b bytes.Buffer
	for range n {
		b.WriteByte(alphabet[s.rng.IntN(len(alphabet))])
	}
	return b.String()
}

func (s *Server) uuid() string {
	var b [16]byte
	for i := range b {
		b[i] = byte(s.rng.UintN(256))
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func newRand(seed int64) *rand.Rand { return rand.New(rand.NewPCG(uint64(seed), 0x5eed)) }

// contracts caches parsed contracts by path: parsing takes tens of
// milliseconds and a Validator is safe for concurrent use.
var contracts sync.Map // path → *contracttest.Validator

func loadContract(file string) (*contracttest.Validator, error) {
	dir, err := contracttest.Dir()
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, file)
	if v, ok := contracts.Load(path); ok {
		return v.(*contracttest.Validator), nil
	}
	v, err := contracttest.LoadFile(path)
	if err != nil {
		if _, statErr := os.Stat(path); errors.Is(statErr, fs.ErrNotExist) {
			return nil, fmt.Errorf("contract %s: %w", file, statErr)
		}
		return nil, err
	}
	actual, _ := contracts.LoadOrStore(path, v)
	return actual.(*contracttest.Validator), nil
}
