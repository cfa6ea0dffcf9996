// Package cloudflaretest is a stateful fake of the Cloudflare API parts the
// bot uses: the Zero Trust organization, Access identity providers (login
// methods) and token verification. It injects faults, latency and the
// 1200-requests-per-5-minutes rate limit, and checks every request and
// response against the Cloudflare OpenAPI contract when it is found.
//
// The demo binary uses it too, so it never skips or fails a test itself:
// contract violations are answered 400 and collected by ContractErrors.
package cloudflaretest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ssobot/ssobot/workflow/contracttest"
)

// ContractFile is the contract the fake is checked against.
const ContractFile = "cloudflare-openapi.json"

// pathPrefix is where the real API lives on api.cloudflare.com.
const pathPrefix = "/client/v4"

// MaskedSecret is what reads return for a client secret: the API never
// gives a secret back.
const MaskedSecret = "**********************************"

// Error codes the fake answers with (the real API's, as far as known).
const (
	CodeAuth           = 10000 // authentication error / token lacks permission
	CodeInvalidRequest = 12130 // access.api.error.invalid_request
	CodeNotFound       = 7003
	CodeMethod         = 7001
	CodeRateLimited    = 971
	CodeInternal       = 10001
)

// maxBody bounds a request body.
const maxBody = 1 << 20

// IdentityProvider is a login method as the fake stores it, including the
// client secret as received (reads mask it).
type IdentityProvider struct {
	ID     string
	Name   string
	Type   string // "oidc", "onetimepin", ...
	Config Config
	// RawConfig, when set, is answered as the config instead of Config:
	// a login method made by someone else whose config has a shape ssobot
	// does not read (e.g. "scopes" as a string). Seeded only
	// (AddIdentityProvider); a PUT replaces it with Config.
	RawConfig json.RawMessage
}

// Config is the union of the config fields the fake understands.
type Config struct {
	ClientID       string   `json:"client_id,omitempty"`
	ClientSecret   string   `json:"client_secret,omitempty"`
	AuthURL        string   `json:"auth_url,omitempty"`
	TokenURL       string   `json:"token_url,omitempty"`
	CertsURL       string   `json:"certs_url,omitempty"`
	Scopes         []string `json:"scopes,omitempty"`
	PKCEEnabled    bool     `json:"pkce_enabled,omitempty"`
	EmailClaimName string   `json:"email_claim_name,omitempty"`
	Claims         []string `json:"claims,omitempty"`
}

func (p IdentityProvider) clone() IdentityProvider {
	p.Config.Scopes = slices.Clone(p.Config.Scopes)
	p.Config.Claims = slices.Clone(p.Config.Claims)
	p.RawConfig = slices.Clone(p.RawConfig)
	return p
}

// Option configures a Server.
type Option func(*Server)

// WithTeam sets the team name: the auth domain is <team>.cloudflareaccess.com.
func WithTeam(team string) Option {
	return func(s *Server) { s.authDomain = team + ".cloudflareaccess.com" }
}

// WithToken sets the valid API token (default: a random one).
func WithToken(token string) Option { return func(s *Server) { s.token = token } }

// WithMaxPerPage caps per_page on lists, as the real API does (default 50).
func WithMaxPerPage(n int) Option { return func(s *Server) { s.maxPerPage = max(n, 1) } }

// WithRateLimitBlock sets how long SetRateLimit blocks all calls once the
// limit is passed (default 5 minutes).
func WithRateLimitBlock(d time.Duration) Option { return func(s *Server) { s.block = d } }

// WithOnHold calls held with a request's method and path when a timeout
// fault starts holding it, so that a test can act once a request is held
// (e.g. Close the server) without polling. held runs on the request's
// goroutine and must not block.
func WithOnHold(held func(method, path string)) Option {
	return func(s *Server) { s.onHold = held }
}

// WithLogger logs one line per request (method, path, status; never bodies).
func WithLogger(l *slog.Logger) Option { return func(s *Server) { s.logger = l } }

// WithoutContract turns contract validation off.
func WithoutContract() Option { return func(s *Server) { s.noContract = true } }

// Server is the fake. It is safe for concurrent use.
type Server struct {
	ts         *httptest.Server
	accountID  string
	done       chan struct{}
	closeOnce  sync.Once
	logger     *slog.Logger
	validator  *contracttest.Validator
	noContract bool
	maxPerPage int
	block      time.Duration
	onHold     func(method, path string)

	mu           sync.Mutex
	token        string
	denied       bool
	authDomain   string
	orgName      string
	idps         []IdentityProvider
	seq          int
	faults       []*activeFault
	faultRate    float64
	faultKinds   []FaultKind
	rng          *mrand.Rand
	latency      time.Duration
	limit        *rateLimit
	calls        contracttest.Recorder
	contractErrs []error
}

var loadContract = sync.OnceValues(func() (*contracttest.Validator, error) {
	return contracttest.Load(ContractFile)
})

// New starts a fake for one account, seeded with an organization
// (auth domain company.cloudflareaccess.com unless WithTeam) and a token.
func New(accountID string, opts ...Option) *Server {
	s := &Server{
		accountID:  accountID,
		done:       make(chan struct{}),
		logger:     slog.New(slog.DiscardHandler),
		maxPerPage: 50,
		block:      5 * time.Minute,
		token:      "cf-" + randomHex(20),
		authDomain: "company.cloudflareaccess.com",
		orgName:    "Company",
	}
	for _, o := range opts {
		o(s)
	}
	if !s.noContract {
		v, err := loadContract()
		switch {
		case errors.Is(err, fs.ErrNotExist):
			// Without the contracts the fake still serves (the demo binary).
		case err != nil:
			s.contractErrs = append(s.contractErrs, fmt.Errorf("load contract: %w", err))
		default:
			s.validator = v
		}
	}
	s.ts = httptest.NewServer(s.calls.Handler(s))
	return s
}

// URL is the base URL to give the client, like https://api.cloudflare.com/client/v4.
func (s *Server) URL() string { return s.ts.URL + pathPrefix }

// Token is the valid API token.
func (s *Server) Token() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.token
}

// AccountID is the account the fake serves.
func (s *Server) AccountID() string { return s.accountID }

// Validating reports whether requests are checked against the contract.
func (s *Server) Validating() bool { return s.validator != nil }

// Close releases requests held by latency or timeouts, then stops the server.
func (s *Server) Close() {
	s.closeOnce.Do(func() { close(s.done) })
	s.ts.CloseClientConnections()
	s.ts.Close()
}

// IdentityProviders returns the stored login methods in creation order,
// with client secrets as received.
func (s *Server) IdentityProviders() []IdentityProvider {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]IdentityProvider, len(s.idps))
	for i, p := range s.idps {
		out[i] = p.clone()
	}
	return out
}

// AddIdentityProvider seeds a login method; an empty ID is assigned and an
// empty Type means "oidc".
func (s *Server) AddIdentityProvider(p IdentityProvider) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p.ID == "" {
		p.ID = s.newIDLocked()
	}
	if p.Type == "" {
		p.Type = "oidc"
	}
	s.idps = append(s.idps, p.clone())
}

// EditIdentityProvider changes the stored login method with this ID in
// place, as someone editing it in the dashboard would (to test that drift
// is caught). edit runs with the server's lock held and must not call the
// Server. It reports whether the login method exists.
func (s *Server) EditIdentityProvider(id string, edit func(*IdentityProvider)) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := s.indexLocked(id)
	if i < 0 {
		return false
	}
	edit(&s.idps[i])
	return true
}

// SetAuthDomain changes the organization's auth domain.
func (s *Server) SetAuthDomain(d string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.authDomain = d
}

// DenyToken makes every call answer 403 code 10000, as for a token without
// the Access permissions.
func (s *Server) DenyToken() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.denied = true
}

// SetLatency delays every answer; a request whose context ends first gets none.
func (s *Server) SetLatency(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latency = d
}

// Spans returns when each answered request was served, in the order they arrived.
func (s *Server) Spans() []contracttest.Span { return s.calls.Spans() }

// CallCount is the number of requests served so far, cheaply: for polling.
func (s *Server) CallCount() int { return s.calls.Len() }

// Calls counts the requests received with the method ("" for any) whose
// path contains pathContains.
func (s *Server) Calls(method, pathContains string) int {
	return s.calls.Count(method, pathContains, false)
}

// ContractErrors returns every contract violation seen so far.
func (s *Server) ContractErrors() []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.contractErrs)
}

func (s *Server) contractError(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.contractErrs = append(s.contractErrs, err)
}

// newIDLocked returns a UUID-shaped ID (the contract caps IDs at 36 characters).
func (s *Server) newIDLocked() string {
	s.seq++
	return fmt.Sprintf("%08x-0000-4000-8000-%012x", s.seq, s.seq)
}

func randomHex(n int) string {
	b := make([]byte, n/2)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// response is an answer built before it is written, so it can be checked
// against the contract or thrown away by a fault.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
	if err != nil {
		s.write(w, r, invalid("unreadable body"))
		return
	}
	s.mu.Lock()
	latency := s.latency
	s.mu.Unlock()

	if latency > 0 {
		t := time.NewTimer(latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			reset(w) // no answer at all
			return
		case <-s.done:
			t.Stop()
			reset(w) // released by Close: no answer at all
			return
		}
	}
	if res, ok := s.rateLimited(); ok {
		s.write(w, r, res)
		return
	}
	if f, ok := s.fault(r.Method, r.URL.Path); ok {
		s.inject(w, r, body, f)
		return
	}
	res := s.handle(r, body)
	s.write(w, r, res)
}

// handle validates the request and answers it. Only handle's answers are
// checked against the contract: faults and rate limiting are deliberate.
func (s *Server) handle(r *http.Request, body []byte) response {
	if s.validator != nil {
		if err := s.validator.ValidateRequest(r, body); err != nil {
			s.contractError(err)
			// A body the API itself refuses gets the API's own answer; any
			// other violation a 400 naming the contract. Nothing is applied.
			if r.Method == http.MethodPost || r.Method == http.MethodPut {
				if _, res, ok := parseIDP(body); !ok {
					return res
				}
			}
			return failure(http.StatusBadRequest, CodeInvalidRequest, "access.api.error.invalid_request: "+err.Error())
		}
	}
	res := s.route(r, body)
	if s.validator != nil && !unsatisfiable(r, res) {
		if err := s.validator.ValidateResponse(r, body, res.status, res.header, res.body); err != nil {
			s.contractError(err)
		}
	}
	return res
}

// unsatisfiable reports answers the contract cannot accept whatever they
// hold: the token verify failure schema is allOf a success (success: true,
// result required) and a failure (success: false, result null).
func unsatisfiable(r *http.Request, res response) bool {
	return res.status >= 400 && strings.HasSuffix(r.URL.Path, "/tokens/verify")
}

func (s *Server) write(w http.ResponseWriter, r *http.Request, res response) {
	for k, v := range res.header {
		w.Header()[k] = v
	}
	w.WriteHeader(res.status)
	_, _ = w.Write(res.body)
	s.logger.Info("cloudflaretest", "method", r.Method, "path", r.URL.Path, "status", res.status)
}

func (s *Server) route(r *http.Request, body []byte) response {
	rest, ok := strings.CutPrefix(r.URL.Path, pathPrefix+"/")
	if !ok {
		return failure(http.StatusNotFound, CodeNotFound, "No route for the URI")
	}
	segs := strings.Split(strings.TrimSuffix(rest, "/"), "/")
	s.mu.Lock()
	authorized := !s.denied && r.Header.Get("Authorization") == "Bearer "+s.token
	s.mu.Unlock()
	if !authorized {
		return failure(http.StatusForbidden, CodeAuth, "Authentication error")
	}

	switch {
	case match(segs, "user", "tokens", "verify"):
		return s.onlyGET(r, s.verifyToken)
	}
	if len(segs) < 3 || segs[0] != "accounts" {
		return failure(http.StatusNotFound, CodeNotFound, "No route for the URI")
	}
	if segs[1] != s.accountID {
		// Cloudflare answers a token without access to an account this way.
		return failure(http.StatusForbidden, CodeAuth, "Authentication error")
	}
	segs = segs[2:]
	switch {
	case match(segs, "tokens", "verify"):
		return s.onlyGET(r, s.verifyToken)
	case match(segs, "access", "organizations"):
		return s.onlyGET(r, s.organization)
	case match(segs, "access", "identity_providers"):
		switch r.Method {
		case http.MethodGet:
			return s.listIDPs(r)
		case http.MethodPost:
			return s.createIDP(body)
		}
		return methodNotAllowed()
	case len(segs) == 3 && segs[0] == "access" && segs[1] == "identity_providers":
		id := segs[2]
		switch r.Method {
		case http.MethodGet:
			return s.getIDP(id)
		case http.MethodPut:
			return s.updateIDP(id, body)
		case http.MethodDelete:
			return s.deleteIDP(id)
		}
		return methodNotAllowed()
	}
	return failure(http.StatusNotFound, CodeNotFound, "No route for the URI")
}

func match(segs []string, want ...string) bool { return slices.Equal(segs, want) }

func (s *Server) onlyGET(r *http.Request, h func() response) response {
	if r.Method != http.MethodGet {
		return methodNotAllowed()
	}
	return h()
}

func methodNotAllowed() response {
	return failure(http.StatusMethodNotAllowed, CodeMethod, "Method not allowed")
}

func (s *Server) verifyToken() response {
	return success(http.StatusOK, map[string]any{"id": "ed17574386854bf78a67040be0a770b0", "status": "active"}, nil)
}

func (s *Server) organization() response {
	s.mu.Lock()
	defer s.mu.Unlock()
	return success(http.StatusOK, map[string]any{
		"auth_domain":               s.authDomain,
		"name":                      s.orgName,
		"session_duration":          "24h",
		"auto_redirect_to_identity": false,
		"is_ui_read_only":           false,
		"created_at":                "2024-01-01T00:00:00Z",
		"updated_at":                "2024-01-01T00:00:00Z",
	}, nil)
}

func (s *Server) listIDPs(r *http.Request) response {
	q := r.URL.Query()
	page, err := positive(q.Get("page"), 1)
	if err != nil {
		return invalid("page must be a positive integer")
	}
	per, err := positive(q.Get("per_page"), 20)
	if err != nil {
		return invalid("per_page must be a positive integer")
	}
	per = min(per, s.maxPerPage)

	s.mu.Lock()
	defer s.mu.Unlock()
	total := len(s.idps)
	items := []any{}
	if start := (page - 1) * per; start < total {
		for _, p := range s.idps[start:min(start+per, total)] {
			items = append(items, view(p))
		}
	}
	info := map[string]any{"page": page, "per_page": per, "count": len(items), "total_count": total}
	return success(http.StatusOK, items, info)
}

func positive(v string, def int) (int, error) {
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, errors.New("not a positive integer")
	}
	return n, nil
}

func (s *Server) createIDP(body []byte) response {
	p, res, ok := parseIDP(body)
	if !ok {
		return res
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p.ID = s.newIDLocked()
	s.idps = append(s.idps, p)
	return success(http.StatusCreated, view(p), nil)
}

func (s *Server) getIDP(id string) response {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := s.indexLocked(id)
	if i < 0 {
		return idpNotFound()
	}
	return success(http.StatusOK, view(s.idps[i]), nil)
}

func (s *Server) updateIDP(id string, body []byte) response {
	p, res, ok := parseIDP(body)
	if !ok {
		return res
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	i := s.indexLocked(id)
	if i < 0 {
		return idpNotFound()
	}
	p.ID = id
	s.idps[i] = p // a full replace, as PUT is
	return success(http.StatusOK, view(p), nil)
}

func (s *Server) deleteIDP(id string) response {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := s.indexLocked(id)
	if i < 0 {
		return idpNotFound()
	}
	s.idps = slices.Delete(s.idps, i, i+1)
	return success(http.StatusAccepted, map[string]any{"id": id}, nil)
}

func (s *Server) indexLocked(id string) int {
	return slices.IndexFunc(s.idps, func(p IdentityProvider) bool { return p.ID == id })
}

func idpNotFound() response {
	return failure(http.StatusNotFound, CodeNotFound, "access.api.error.not_found: identity provider not found")
}

func invalid(msg string) response {
	return failure(http.StatusBadRequest, CodeInvalidRequest, "access.api.error.invalid_request: "+msg)
}

var idpTypes = []string{"onetimepin", "azureAD", "saml", "centrify", "facebook", "github", "google-apps", "google", "linkedin", "oidc", "okta", "onelogin", "pingone", "yandex"}

// parseIDP reads a create or update body the way the API checks it.
func parseIDP(body []byte) (IdentityProvider, response, bool) {
	var in struct {
		Name   *string         `json:"name"`
		Type   *string         `json:"type"`
		Config json.RawMessage `json:"config"`
	}
	if err := json.Unmarshal(body, &in); err != nil {
		return IdentityProvider{}, invalid("malformed JSON body"), false
	}
	switch {
	case in.Name == nil || strings.TrimSpace(*in.Name) == "":
		return IdentityProvider{}, invalid("name is required"), false
	case in.Type == nil || *in.Type == "":
		return IdentityProvider{}, invalid("type is required"), false
	case !slices.Contains(idpTypes, *in.Type):
		return IdentityProvider{}, invalid("unknown identity provider type"), false
	case len(in.Config) == 0 || string(in.Config) == "null":
		return IdentityProvider{}, invalid("config is required"), false
	}
	var cfg Config
	if err := json.Unmarshal(in.Config, &cfg); err != nil {
		return IdentityProvider{}, invalid("config is malformed"), false
	}
	if *in.Type == "oidc" {
		// client_secret is write-only, so every create and full replace sends it.
		for _, f := range []struct{ name, v string }{
			{"client_id", cfg.ClientID}, {"client_secret", cfg.ClientSecret},
			{"auth_url", cfg.AuthURL}, {"token_url", cfg.TokenURL}, {"certs_url", cfg.CertsURL},
		} {
			if f.v == "" {
				return IdentityProvider{}, invalid("config." + f.name + " is required"), false
			}
		}
	}
	return IdentityProvider{Name: *in.Name, Type: *in.Type, Config: cfg}, response{}, true
}

// view is a login method as reads return it: the secret masked.
func view(p IdentityProvider) map[string]any {
	if len(p.RawConfig) > 0 {
		return map[string]any{"id": p.ID, "name": p.Name, "type": p.Type, "config": p.RawConfig}
	}
	cfg := p.Config
	if cfg.ClientSecret != "" {
		cfg.ClientSecret = MaskedSecret
	}
	return map[string]any{"id": p.ID, "name": p.Name, "type": p.Type, "config": cfg}
}

type apiMessage struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func success(status int, result, info any) response {
	env := map[string]any{"success": true, "errors": []apiMessage{}, "messages": []apiMessage{}, "result": result}
	if info != nil {
		env["result_info"] = info
	}
	return jsonResponse(status, env, nil)
}

func failure(status, code int, msg string) response {
	return jsonResponse(status, map[string]any{
		"success": false, "errors": []apiMessage{{code, msg}}, "messages": []apiMessage{}, "result": nil,
	}, nil)
}

func jsonResponse(status int, v any, header http.Header) response {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("cloudflaretest: encode response: %v", err)) // only fixed shapes are encoded
	}
	if header == nil {
		header = http.Header{}
	}
	header.Set("Content-Type", "application/json")
	return response{status: status, header: header, body: b}
}

// rateLimit emulates Cloudflare's per-token limit: past n calls in a window,
// every call is refused until the block ends.
type rateLimit struct {
	n            int
	window       time.Duration
	now          func() time.Time
	windowStart  time.Time
	count        int
	blockedUntil time.Time
}

// SetRateLimit allows n calls per window (Cloudflare: 1200 per 5 minutes);
// the call past n and every call in the following block period (5 minutes
// unless WithRateLimitBlock) are answered 429 with retry-after. now is the
// clock (nil: time.Now). n <= 0 turns the limit off.
func (s *Server) SetRateLimit(n int, window time.Duration, now func() time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n <= 0 {
		s.limit = nil
		return
	}
	if now == nil {
		now = time.Now
	}
	s.limit = &rateLimit{n: n, window: window, now: now}
}

func (s *Server) rateLimited() (response, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.limit
	if l == nil {
		return response{}, false
	}
	now := l.now()
	if now.Before(l.blockedUntil) {
		return tooMany(l.blockedUntil.Sub(now)), true
	}
	if l.windowStart.IsZero() || !now.Before(l.windowStart.Add(l.window)) {
		l.windowStart, l.count = now, 0
	}
	l.count++
	if l.count > l.n {
		l.blockedUntil = now.Add(s.block)
		l.windowStart, l.count = time.Time{}, 0
		return tooMany(s.block), true
	}
	return response{}, false
}

func tooMany(wait time.Duration) response {
	res := failure(http.StatusTooManyRequests, CodeRateLimited, "Please wait and consider throttling your request speed")
	res.header.Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
	return res
}
