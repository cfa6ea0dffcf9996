package slacktest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ErrClosed is returned by waiting methods once the server is closed.
var ErrClosed = errors.New("slacktest: server closed")

// ErrNotFound is returned by helpers that look up state (a message, a button,
// a view, an envelope) that does not exist.
var ErrNotFound = errors.New("slacktest: not found")

const (
	apiPrefix      = "/api/"
	responsePrefix = "/response/"
	socketPath     = "/socket"

	maxBodyBytes = 4 << 20
)

// Option configures a Server.
type Option func(*config)

type config struct {
	botToken     string
	appToken     string
	botUserID    string
	botName      string
	botID        string
	teamID       string
	teamDomain   string
	teamName     string
	appID        string
	now          func() time.Time
	after        func(time.Duration) <-chan time.Time
	pingInterval time.Duration
	noHistory    bool
}

// WithoutHistory keeps a call only until every subscriber (see Subscribe)
// has received it, so that a long benchmark does not hold every request it
// made; Calls and WaitFor then see only the calls still kept.
func WithoutHistory() Option { return func(c *config) { c.noHistory = true } }

// WithBotToken sets the bot token (xoxb-...) the fake accepts.
func WithBotToken(token string) Option { return func(c *config) { c.botToken = token } }

// WithAppToken sets the app-level token (xapp-...) accepted by
// apps.connections.open.
func WithAppToken(token string) Option { return func(c *config) { c.appToken = token } }

// WithBotUser sets the bot's user ID and name (as returned by auth.test).
func WithBotUser(id, name string) Option {
	return func(c *config) { c.botUserID, c.botName = id, name }
}

// WithTeam sets the workspace ID and domain.
func WithTeam(id, domain string) Option {
	return func(c *config) { c.teamID, c.teamDomain = id, domain }
}

// WithAppID sets the app ID sent in payloads and the Socket Mode hello.
func WithAppID(id string) Option { return func(c *config) { c.appID = id } }

// WithClock sets the clock used for Call.At, trigger and response_url expiry.
// Message timestamps do not depend on it: they are a deterministic sequence.
func WithClock(now func() time.Time) Option { return func(c *config) { c.now = now } }

// WithTimer sets how the latency of SetLatency is waited out: after(d)
// returns a channel that receives once d has passed (default time.After). A
// test passes its own to see the delay asked for and end it on cue.
func WithTimer(after func(d time.Duration) <-chan time.Time) Option {
	return func(c *config) { c.after = after }
}

// WithPingInterval sets how often the Socket Mode endpoint pings its clients
// (slack-go's client reconnects after 30s without a ping). Default 10s.
func WithPingInterval(d time.Duration) Option { return func(c *config) { c.pingInterval = d } }

// Server is a fake Slack. Create it with NewServer and Close it when done. All
// methods are safe for concurrent use.
type Server struct {
	cfg  config
	srv  *httptest.Server
	done chan struct{}
	wg   sync.WaitGroup // socket goroutines

	closeOnce sync.Once

	mu       sync.Mutex
	changed  chan struct{} // closed and replaced whenever state changes
	calls    []Call
	dropped  int           // calls let go before calls[0] (WithoutHistory)
	subs     map[*int]bool // each subscriber's next call, counted from the first
	latency  time.Duration
	faults   map[string][]fault
	users    map[string]User
	groups   map[string][]string
	noGroups bool
	channels map[string]*channel
	msgs     map[string][]*stored // per channel, in post order
	byTS     map[string]*stored   // channel|ts -> message
	tsSeq    int64
	syms     symbols
	respURLs []responseURL       // the n-th URL handed out is respURLs[n-1]
	triggers []trigger           // likewise for trigger_ids
	foreign  map[string]*trigger // trigger_ids views.open took that the fake did not issue
	views    map[string]*storedView
	viewIDs  []string
	viewSeq  int
	tickets  map[string]bool
	ticketN  int
	sockets  []*socketConn
	acks     map[string]*ack
	envSeq   int
}

// NewServer starts a fake Slack on a local port.
func NewServer(opts ...Option) *Server {
	cfg := config{
		botToken:     "xoxb-0000000000-0000000000000-slacktestbottoken",
		appToken:     "xapp-1-A0SLACKTEST-0000000000000-slacktestapptoken",
		botUserID:    "U0BOT00001",
		botName:      "ssobot",
		botID:        "B0BOT00001",
		teamID:       "T0TEAM0001",
		teamDomain:   "slacktest",
		teamName:     "Slack Test",
		appID:        "A0SLACKTEST",
		now:          time.Now,
		after:        time.After,
		pingInterval: 10 * time.Second,
	}
	for _, o := range opts {
		o(&cfg)
	}
	s := &Server{
		cfg:      cfg,
		done:     make(chan struct{}),
		changed:  make(chan struct{}),
		faults:   map[string][]fault{},
		users:    map[string]User{},
		groups:   map[string][]string{},
		channels: map[string]*channel{},
		msgs:     map[string][]*stored{},
		byTS:     map[string]*stored{},
		foreign:  map[string]*trigger{},
		views:    map[string]*storedView{},
		tickets:  map[string]bool{},
		acks:     map[string]*ack{},
		subs:     map[*int]bool{},
	}
	// The bot itself is a workspace member, so users.info on it answers like
	// Slack does (is_bot: true), which lets tests check "bots cannot approve".
	s.users[cfg.botUserID] = User{ID: cfg.botUserID, Name: cfg.botName, RealName: cfg.botName, IsBot: true}

	mux := http.NewServeMux()
	mux.HandleFunc(apiPrefix, s.serveAPI)
	mux.HandleFunc(responsePrefix, s.serveResponseURL)
	mux.HandleFunc(socketPath, s.serveSocket)
	s.srv = httptest.NewServer(mux)
	return s
}

// URL is the server's base URL (http://127.0.0.1:port).
func (s *Server) URL() string { return s.srv.URL }

// APIURL is the Web API base URL with its trailing slash, for
// slack.OptionAPIURL.
func (s *Server) APIURL() string { return s.srv.URL + apiPrefix }

// BotToken is the bot token the fake accepts.
func (s *Server) BotToken() string { return s.cfg.botToken }

// AppToken is the app-level token accepted by apps.connections.open.
func (s *Server) AppToken() string { return s.cfg.appToken }

// BotUserID is the bot's user ID.
func (s *Server) BotUserID() string { return s.cfg.botUserID }

// TeamID is the workspace ID.
func (s *Server) TeamID() string { return s.cfg.teamID }

// AppID is the app's ID.
func (s *Server) AppID() string { return s.cfg.appID }

// Close closes Socket Mode connections, stops the server and releases every
// waiter (WaitFor, WaitAck, SendEnvelope, Subscribe feeds).
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		close(s.done)
		socks := s.sockets
		s.sockets = nil
		s.mu.Unlock()
		for _, c := range socks {
			c.close()
		}
		s.srv.Close()
		s.wg.Wait()
	})
}

// SetLatency delays every Web API and response_url request by d before it is
// handled (0 turns it off).
func (s *Server) SetLatency(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latency = d
}

type fault struct {
	code       string
	retryAfter int
	rateLimit  bool
	status     int  // an HTTP status other than 200 and 429 (FailNextStatus)
	pass       bool // no fault: the call is handled as usual (PassNext)
}

// FailNext makes the next n calls of method answer {"ok":false,"error":slackErr}
// without any effect. method is a Web API method name or "response_url".
// Faults queue up in the order they are set.
func (s *Server) FailNext(method string, n int, slackErr string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.faults[method] = append(s.faults[method], fault{code: slackErr})
	}
}

// RateLimitNext makes the next n calls of method answer HTTP 429 with
// Retry-After: retryAfterSeconds (slack-go returns *slack.RateLimitedError).
func (s *Server) RateLimitNext(method string, n int, retryAfterSeconds int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.faults[method] = append(s.faults[method], fault{code: "ratelimited", retryAfter: retryAfterSeconds, rateLimit: true})
	}
}

// FailNextStatus makes the next n calls of method answer HTTP status (a 5xx
// outage, say) without any effect; slack-go returns slack.StatusCodeError.
// The recorded Call's Error is the status text in Slack's style
// ("service_unavailable" for 503).
func (s *Server) FailNextStatus(method string, n int, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	code := strings.ToLower(strings.ReplaceAll(http.StatusText(status), " ", "_"))
	for range n {
		s.faults[method] = append(s.faults[method], fault{code: code, status: status})
	}
}

// PassNext lets the next n calls of method through as usual, ahead of the
// faults set after it: PassNext(m, 1) then FailNext(m, 1, code) fails the
// second call of m, not the first.
func (s *Server) PassNext(method string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.faults[method] = append(s.faults[method], fault{pass: true})
	}
}

func (s *Server) takeFaultLocked(method string) (fault, bool) {
	q := s.faults[method]
	if len(q) == 0 {
		return fault{}, false
	}
	s.faults[method] = q[1:]
	return q[0], !q[0].pass
}

// Calls returns the recorded calls in order, all of them or those of the
// given methods. Treat the returned values as read-only.
func (s *Server) Calls(methods ...string) []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return FilterCalls(s.calls, methods...)
}

// FilterCalls returns the calls of the given methods (all when none given),
// for use inside WaitFor predicates.
func FilterCalls(calls []Call, methods ...string) []Call {
	out := make([]Call, 0, len(calls))
	for _, c := range calls {
		if len(methods) == 0 || slices.Contains(methods, c.Method) {
			out = append(out, c)
		}
	}
	return out
}

// WaitFor blocks until pred holds over the recorded calls and returns them.
// pred is evaluated now and again after every change (a new call, a Socket
// Mode connection); it is never polled on a timer. On ctx expiry it returns
// the last calls seen with an error wrapping ctx.Err().
func (s *Server) WaitFor(ctx context.Context, pred func([]Call) bool) ([]Call, error) {
	for {
		s.mu.Lock()
		calls := slices.Clone(s.calls)
		changed := s.changed
		s.mu.Unlock()
		if pred(calls) {
			return calls, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return calls, fmt.Errorf("wait for calls (%d seen): %w", len(calls), ctx.Err())
		case <-s.done:
			return calls, ErrClosed
		}
	}
}

// Subscribe returns a live feed of the calls recorded from now on, in order
// and without drops, and a function that ends the feed. The channel is closed
// when the feed ends or the server closes.
func (s *Server) Subscribe() (<-chan Call, func()) {
	ch := make(chan Call)
	stop := make(chan struct{})
	s.mu.Lock()
	next := new(int)
	*next = s.dropped + len(s.calls)
	s.subs[next] = true
	s.mu.Unlock()
	go func() {
		defer close(ch)
		defer func() {
			s.mu.Lock()
			delete(s.subs, next)
			s.trimLocked()
			s.mu.Unlock()
		}()
		for {
			s.mu.Lock()
			pending := slices.Clone(s.calls[*next-s.dropped:])
			changed := s.changed
			s.mu.Unlock()
			for _, c := range pending {
				select {
				case ch <- c:
					s.mu.Lock()
					*next++
					s.trimLocked()
					s.mu.Unlock()
				case <-stop:
					return
				case <-s.done:
					return
				}
			}
			if len(pending) > 0 {
				continue
			}
			select {
			case <-changed:
			case <-stop:
				return
			case <-s.done:
				return
			}
		}
	}()
	var once sync.Once
	return ch, func() { once.Do(func() { close(stop) }) }
}

// trimLocked lets go of the calls every subscriber has received, when the
// server keeps no history.
func (s *Server) trimLocked() {
	if !s.cfg.noHistory {
		return
	}
	keep := s.dropped + len(s.calls)
	for next := range s.subs {
		keep = min(keep, *next)
	}
	if n := keep - s.dropped; n > 0 {
		// The dropped calls' memory goes when append next grows the slice.
		clear(s.calls[:n])
		s.calls = s.calls[n:]
		s.dropped = keep
	}
}

func (s *Server) recordLocked(c Call) {
	s.calls = append(s.calls, c)
	s.trimLocked()
	s.notifyLocked()
}

func (s *Server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// delay applies the configured latency; false means the request was
// abandoned (client gone or server closing).
func (s *Server) delay(ctx context.Context) bool {
	s.mu.Lock()
	d := s.latency
	s.mu.Unlock()
	if d <= 0 {
		return true
	}
	select {
	case <-s.cfg.after(d):
		return true
	case <-ctx.Done():
		return false
	case <-s.done:
		return false
	}
}

// result is a Web API response body; "ok" is added when it is written.
type result map[string]any

// apiError is a Slack error code with optional detail, which Slack puts in
// response_metadata.messages.
type apiError struct {
	code     string
	messages []string
}

func errCode(code string, messages ...string) *apiError {
	return &apiError{code: code, messages: messages}
}

type tokenKind int

const (
	botToken tokenKind = iota
	appToken
)

type apiMethod struct {
	token  tokenKind
	handle func(s *Server, p params) (result, *apiError)
}

// apiMethods is every Web API method the fake implements. Handlers run with
// s.mu held.
var apiMethods = map[string]apiMethod{
	"auth.test":             {botToken, (*Server).authTest},
	"chat.postMessage":      {botToken, (*Server).chatPostMessage},
	"chat.update":           {botToken, (*Server).chatUpdate},
	"chat.postEphemeral":    {botToken, (*Server).chatPostEphemeral},
	"chat.delete":           {botToken, (*Server).chatDelete},
	"chat.getPermalink":     {botToken, (*Server).chatGetPermalink},
	"views.open":            {botToken, (*Server).viewsOpen},
	"views.update":          {botToken, (*Server).viewsUpdate},
	"users.info":            {botToken, (*Server).usersInfo},
	"usergroups.users.list": {botToken, (*Server).usergroupsUsersList},
	"conversations.info":    {botToken, (*Server).conversationsInfo},
	"apps.connections.open": {appToken, (*Server).appsConnectionsOpen},
}

func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	if !s.delay(r.Context()) {
		return
	}
	method := strings.TrimPrefix(r.URL.Path, apiPrefix)
	p, perr := readParams(r)
	token := bearerToken(r)
	if token == "" {
		token = p.str("token")
	}
	p.drop("token")

	s.mu.Lock()
	call := Call{Method: method, Form: p.form, JSON: p.json, Token: token, At: s.cfg.now()}
	status, header, body := s.dispatchLocked(method, token, p, perr)
	call.Status = status
	call.Error, _ = body["error"].(string)
	call.Result = body
	s.recordLocked(call)
	s.mu.Unlock()

	writeJSON(w, status, header, body)
}

func (s *Server) dispatchLocked(method, token string, p params, perr error) (int, http.Header, result) {
	if f, ok := s.takeFaultLocked(method); ok {
		return faultResponse(f)
	}
	if perr != nil {
		return http.StatusOK, nil, errorBody(errCode(perr.Error()))
	}
	m, ok := apiMethods[method]
	if !ok {
		return http.StatusOK, nil, errorBody(errCode("unknown_method"))
	}
	if e := s.checkToken(m.token, token); e != nil {
		return http.StatusOK, nil, errorBody(e)
	}
	res, e := m.handle(s, p)
	if e != nil {
		return http.StatusOK, nil, errorBody(e)
	}
	if res == nil {
		res = result{}
	}
	res["ok"] = true
	return http.StatusOK, nil, res
}

func faultResponse(f fault) (int, http.Header, result) {
	if f.rateLimit {
		h := http.Header{}
		h.Set("Retry-After", strconv.Itoa(f.retryAfter))
		return http.StatusTooManyRequests, h, result{"ok": false, "error": f.code}
	}
	if f.status != 0 {
		return f.status, nil, result{"ok": false, "error": f.code}
	}
	return http.StatusOK, nil, result{"ok": false, "error": f.code}
}

func (s *Server) checkToken(want tokenKind, token string) *apiError {
	switch {
	case token == "":
		return errCode("not_authed")
	case token == s.cfg.botToken && want == botToken, token == s.cfg.appToken && want == appToken:
		return nil
	case token == s.cfg.botToken, token == s.cfg.appToken:
		return errCode("not_allowed_token_type")
	default:
		return errCode("invalid_auth")
	}
}

func errorBody(e *apiError) result {
	body := result{"ok": false, "error": e.code}
	if len(e.messages) > 0 {
		body["response_metadata"] = map[string]any{"messages": e.messages}
	}
	return body
}

func writeJSON(w http.ResponseWriter, status int, header http.Header, body any) {
	for k, v := range header {
		w.Header()[k] = v
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

func bearerToken(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if t, ok := strings.CutPrefix(h, "Bearer "); ok {
		return strings.TrimSpace(t)
	}
	return ""
}

// params are a request's arguments: form fields (form-encoded bodies and the
// query string) or a JSON object, as Slack accepts both.
type params struct {
	form url.Values
	json map[string]any
}

var (
	errInvalidForm = errors.New("invalid_form_data")
	errInvalidJSON = errors.New("invalid_json")
)

func readParams(r *http.Request) (params, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes))
	if err != nil {
		return params{}, errInvalidForm
	}
	query := r.URL.Query()
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct == "application/json" {
		p := params{json: map[string]any{}}
		if len(query) > 0 {
			p.form = query
		}
		if len(bytes.TrimSpace(body)) == 0 {
			return p, nil
		}
		if err := json.Unmarshal(body, &p.json); err != nil {
			return p, errInvalidJSON
		}
		return p, nil
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return params{form: query}, errInvalidForm
	}
	for k, v := range query {
		if !form.Has(k) {
			form[k] = v
		}
	}
	return params{form: form}, nil
}

func (p params) has(k string) bool {
	if _, ok := p.form[k]; ok {
		return true
	}
	_, ok := p.json[k]
	return ok
}

func (p params) str(k string) string {
	if v, ok := p.form[k]; ok && len(v) > 0 {
		return v[0]
	}
	switch v := p.json[k].(type) {
	case nil:
		return ""
	case string:
		return v
	case bool:
		return strconv.FormatBool(v)
	default:
		b, _ := json.Marshal(v)
		return string(b)
	}
}

func (p params) bool(k string) bool {
	v := p.str(k)
	return v == "true" || v == "1"
}

// raw returns a JSON-valued argument (blocks, view): form fields carry it as
// a string, JSON bodies as a value or, from some clients, a string.
func (p params) raw(k string) (json.RawMessage, bool) {
	if v, ok := p.form[k]; ok && len(v) > 0 {
		return json.RawMessage(v[0]), true
	}
	v, ok := p.json[k]
	if !ok || v == nil {
		return nil, false
	}
	if s, isStr := v.(string); isStr {
		return json.RawMessage(s), true
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, false
	}
	return b, true
}

func (p params) drop(k string) {
	delete(p.form, k)
	delete(p.json, k)
}

func (s *Server) authTest(params) (result, *apiError) {
	return result{
		"url":     "https://" + s.cfg.teamDomain + ".slack.com/",
		"team":    s.cfg.teamName,
		"user":    s.cfg.botName,
		"team_id": s.cfg.teamID,
		"user_id": s.cfg.botUserID,
		"bot_id":  s.cfg.botID,
	}, nil
}
