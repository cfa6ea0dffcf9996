package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ssobot/ssobot/workflow"
)

// runReader reads runs; the store and the engine both implement it.
type runReader interface {
	GetRun(ctx context.Context, id int64) (*workflow.Run, error)
	ListRuns(ctx context.Context, opts workflow.ListOptions) ([]*workflow.Run, error)
	Events(ctx context.Context, id int64) ([]workflow.Event, error)
}

// adminConfig wires the admin listener.
type adminConfig struct {
	Runs runReader
	// Backup writes a consistent copy of the database.
	Backup func(ctx context.Context, w io.Writer) (int64, error)
	// Ready returns why the bot is not ready, or nil.
	Ready   func() error
	Metrics http.Handler
	Logger  *slog.Logger
	Clock   func() time.Time
	// BackupStall is how long a backup client may take to accept the next
	// chunk (default backupStallTimeout).
	BackupStall time.Duration
	// Hosts are the host names, in lower case, answered besides the
	// built-in ones (see adminHostAllowed).
	Hosts []string
	// ServiceNames also answers single-label and Kubernetes service
	// names: set when the API listens beyond loopback, where other
	// machines and containers reach it by such names, and no
	// SSOBOT_ADMIN_HOSTS is set (see adminServiceNames).
	ServiceNames bool
}

// backupStallTimeout bounds a backup client that stops reading: the copy
// holds a read transaction, and the commit that next grows the database
// file waits for it, and every write and then every read behind that one.
const backupStallTimeout = 30 * time.Second

// Limits of GET /api/runs.
const (
	defaultRunsLimit = 50
	maxRunsLimit     = 500
)

// newAdminHandler serves /healthz, /readyz, /metrics, /api/runs,
// /api/runs/{id} and /api/backup, to requests for an allowed host only
// (see adminHostAllowed). Nothing it serves holds a secret: runs never
// store one.
func newAdminHandler(cfg adminConfig) http.Handler {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.BackupStall <= 0 {
		cfg.BackupStall = backupStallTimeout
	}
	a := &admin{cfg: cfg}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", a.readyz)
	if cfg.Metrics != nil {
		mux.Handle("GET /metrics", cfg.Metrics)
	}
	mux.HandleFunc("GET /api/runs", a.listRuns)
	mux.HandleFunc("GET /api/runs/{id}", a.getRun)
	mux.HandleFunc("GET /api/backup", a.backup)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		// This pattern takes every method, so the mux never answers 405 on
		// its own: a path that GET would find gets it here. Every endpoint
		// is GET (which serves HEAD too).
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			get := r.WithContext(r.Context())
			get.Method = http.MethodGet
			if _, pattern := mux.Handler(get); pattern != "/" {
				w.Header().Set("Allow", "GET, HEAD")
				writeJSON(w, http.StatusMethodNotAllowed, apiError{Error: fmt.Sprintf("method %s not allowed on %s: the admin API is read-only (GET)", r.Method, r.URL.Path)})
				return
			}
		}
		writeJSON(w, http.StatusNotFound, apiError{Error: "no such endpoint: try /healthz, /readyz, /metrics, /api/runs, /api/runs/{id} or /api/backup"})
	})
	a.hosts = make(map[string]bool, len(cfg.Hosts))
	for _, h := range cfg.Hosts {
		a.hosts[h] = true
	}
	a.next = mux
	return a
}

type admin struct {
	cfg   adminConfig
	hosts map[string]bool // cfg.Hosts
	next  http.Handler

	mu          sync.Mutex
	refused     int       // requests refused since lastRefusal was logged
	lastRefusal time.Time // when a refusal was last logged
}

// refusedHostLogEvery spaces the log lines about refused hosts: a page
// trying its luck may send many requests.
const refusedHostLogEvery = time.Minute

// maxQuotedHost caps how much of a refused host name is quoted back and
// logged: the requester chooses it.
const maxQuotedHost = 100

// ServeHTTP refuses a request for a host name the admin API does not
// answer to. The API has no authentication and listens on localhost by
// default, which a browser reaches too: a web page whose own host name is
// made to resolve to 127.0.0.1 (DNS rebinding) could otherwise read the
// runs and a copy of the database from the operator's machine. The
// browser sends that page's name as Host, and a page cannot choose
// another.
func (a *admin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	host := adminHostName(r.Host)
	if adminHostAllowed(host, a.hosts, a.cfg.ServiceNames) {
		a.next.ServeHTTP(w, r)
		return
	}
	shown := truncate(host, maxQuotedHost)
	a.logRefusal(r, shown)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	// 421 Misdirected Request, not 403: the request was for a name this
	// server does not answer to, which no credential would change; and
	// it tells that apart from a proxy's 403 when a probe fails.
	w.WriteHeader(http.StatusMisdirectedRequest)
	fmt.Fprintf(w, "host %q is not allowed for the admin API: use its IP address or localhost, or add the name to SSOBOT_ADMIN_HOSTS\n", shown)
}

func (a *admin) logRefusal(r *http.Request, host string) {
	a.mu.Lock()
	a.refused++
	now := a.cfg.Clock()
	if !a.lastRefusal.IsZero() && now.Sub(a.lastRefusal) < refusedHostLogEvery {
		a.mu.Unlock()
		return
	}
	n := a.refused
	a.refused, a.lastRefusal = 0, now
	a.mu.Unlock()
	a.cfg.Logger.Warn("admin request refused: host not allowed (add it to SSOBOT_ADMIN_HOSTS if it is yours)",
		"host", host, "path", truncate(r.URL.Path, maxQuotedHost), "remote", r.RemoteAddr, "refused", n)
}

// adminHostName is the host of a Host header in lower case, without the
// port, the brackets of an IPv6 address or a trailing dot.
func adminHostName(hostport string) string {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = strings.TrimSuffix(strings.TrimPrefix(hostport, "["), "]") // no port
	}
	return strings.ToLower(strings.TrimSuffix(host, "."))
}

// adminHostAllowed reports whether the admin API answers to host (from
// adminHostName). It answers to:
//   - none: HTTP/1.0 sends no Host, and no browser sends none;
//   - an IP address, any: Kubernetes probes and Prometheus use the pod's,
//     ssobot health and runs the listener's; a rebinding page is loaded by
//     a name, which its requests carry;
//   - localhost (in /etc/hosts everywhere). Not *.localhost: browsers keep
//     those on the machine, but not every resolver does (RFC 6761 only
//     asks them to), and no client of ssobot's uses one;
//   - the names in hosts (SSOBOT_ADMIN_HOSTS, and the host of
//     SSOBOT_ADMIN_LISTEN when it is a name);
//   - with serviceNames only, a name of one label (a Compose or
//     Kubernetes short service name: ssobot) or a Kubernetes service
//     name, *.svc or *.svc.cluster.local.
//
// The attack is DNS rebinding: a page whose name its owner makes resolve
// to an address of the operator's machine or network reads the API
// through the operator's browser. Public DNS cannot be made to answer for
// the names of one label or under svc or local, but public DNS is not the
// only resolver asked: LLMNR and NetBIOS (Windows, systemd-resolved with
// LLMNR on) resolve single-label names, and mDNS resolves *.local (hence
// *.svc.cluster.local), by asking the local network, where any machine
// may answer. So on a loopback listener, which only the operator's own
// machine reaches, these names are refused: no client needs them there.
// On a listener beyond loopback they are how other containers and pods
// reach the API, so they are answered, and a machine on the same network
// answering LLMNR or mDNS can still rebind one of them onto the API for a
// browser that reaches it. That includes a workstation that publishes a
// container's :9090 on its own loopback (docker run -p
// 127.0.0.1:9090:9090): ssobot sees only the listener in the container.
// Setting SSOBOT_ADMIN_HOSTS there turns the service names off (see
// adminServiceNames); otherwise what protects that case is the network.
func adminHostAllowed(host string, hosts map[string]bool, serviceNames bool) bool {
	switch {
	case host == "" || host == "localhost" || isIPLiteral(host) || hosts[host]:
		return true
	case !serviceNames || len(host) > 253 || !hostNamePattern.MatchString(host):
		return false
	}
	return !strings.Contains(host, ".") || strings.HasSuffix(host, ".svc") || strings.HasSuffix(host, ".svc.cluster.local")
}

// adminBeyondLoopback reports whether a listener at addr is reachable
// from other machines or containers: it is not on a loopback address. It
// asks the bound address rather than SSOBOT_ADMIN_LISTEN, which may be a
// name (one that /etc/hosts maps to 127.0.1.1, say). Anything but TCP
// counts as loopback: the stricter check.
func adminBeyondLoopback(addr net.Addr) bool {
	a, ok := addr.(*net.TCPAddr)
	return ok && !a.IP.IsLoopback() // an unspecified IP (:9090) included
}

// adminServiceNames reports whether the admin API on addr answers the
// built-in service names: beyond loopback, unless SSOBOT_ADMIN_HOSTS is
// set. A list set by the operator is the whole set of names, so that where
// the network is not trusted (a workstation publishing a container's port
// on its loopback, say) the names LLMNR or mDNS could answer can be turned
// off by listing the ones in use.
func adminServiceNames(addr net.Addr, cfg Config) bool {
	return adminBeyondLoopback(addr) && len(cfg.AdminHosts) == 0
}

// truncate cuts s to at most n bytes, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

type apiError struct {
	Error string `json:"error"`
}

func (a *admin) readyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if a.cfg.Ready != nil {
		if err := a.cfg.Ready(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "not ready: %v\n", err)
			return
		}
	}
	io.WriteString(w, "ready\n")
}

// runList is the body of GET /api/runs.
type runList struct {
	Runs []runView `json:"runs"`
}

func (a *admin) listRuns(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	opts := workflow.ListOptions{Limit: defaultRunsLimit}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			writeJSON(w, http.StatusBadRequest, apiError{Error: fmt.Sprintf("limit %q must be a whole number from 1 to %d", v, maxRunsLimit)})
			return
		}
		opts.Limit = min(n, maxRunsLimit)
	}
	if v := q.Get("before"); v != "" {
		id, err := strconv.ParseInt(v, 10, 64)
		if err != nil || id < 1 {
			writeJSON(w, http.StatusBadRequest, apiError{Error: fmt.Sprintf("before %q must be a run ID", v)})
			return
		}
		opts.BeforeID = id
	}
	for _, s := range q["state"] {
		if !workflow.State(s).Valid() {
			writeJSON(w, http.StatusBadRequest, apiError{Error: fmt.Sprintf("state %q is not one of %v", s, workflow.States)})
			return
		}
		opts.States = append(opts.States, workflow.State(s))
	}
	runs, err := a.cfg.Runs.ListRuns(r.Context(), opts)
	if err != nil {
		a.serverError(w, r, "list runs", err)
		return
	}
	out := runList{Runs: make([]runView, 0, len(runs))}
	for _, run := range runs {
		out.Runs = append(out.Runs, newRunView(run, nil))
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *admin) getRun(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id < 1 {
		writeJSON(w, http.StatusNotFound, apiError{Error: fmt.Sprintf("run %q not found: run IDs are positive numbers", r.PathValue("id"))})
		return
	}
	run, err := a.cfg.Runs.GetRun(r.Context(), id)
	if errors.Is(err, workflow.ErrNotFound) {
		writeJSON(w, http.StatusNotFound, apiError{Error: fmt.Sprintf("run %d not found", id)})
		return
	}
	if err != nil {
		a.serverError(w, r, "get run", err)
		return
	}
	events, err := a.cfg.Runs.Events(r.Context(), id)
	if err != nil {
		a.serverError(w, r, "get run events", err)
		return
	}
	writeJSON(w, http.StatusOK, newRunView(run, events))
}

func (a *admin) backup(w http.ResponseWriter, r *http.Request) {
	if a.cfg.Backup == nil {
		writeJSON(w, http.StatusNotImplemented, apiError{Error: "backup is not available"})
		return
	}
	name := "ssobot-" + a.cfg.Clock().UTC().Format("20060102T150405Z") + ".db"
	rc := http.NewResponseController(w)
	cw := &countingWriter{w: w, header: func() {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
		w.Header().Set("Cache-Control", "no-store")
	}, before: func() {
		// Each chunk gets its own deadline: a slow client is fine, one
		// that stopped reading is cut off (see backupStallTimeout).
		_ = rc.SetWriteDeadline(time.Now().Add(a.cfg.BackupStall))
	}}
	n, err := a.cfg.Backup(r.Context(), cw)
	if err != nil {
		if cw.n == 0 {
			a.serverError(w, r, "backup", err)
			return
		}
		// The status is sent: cut the stream short so the client sees a
		// truncated body rather than a silently corrupt copy.
		a.cfg.Logger.Error("backup interrupted", "bytes", cw.n, workflow.KeyError, err)
		panic(http.ErrAbortHandler)
	}
	a.cfg.Logger.Info("backup served", "bytes", n, "remote", r.RemoteAddr)
}

// countingWriter sets the response headers before the first byte.
type countingWriter struct {
	w      io.Writer
	header func()
	before func() // before each write, if set
	n      int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	if c.n == 0 && c.header != nil {
		c.header()
		c.header = nil
	}
	if c.before != nil {
		c.before()
	}
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func (a *admin) serverError(w http.ResponseWriter, r *http.Request, op string, err error) {
	a.cfg.Logger.Error("admin request failed", "op", op, "path", r.URL.Path, workflow.KeyError, err)
	writeJSON(w, http.StatusInternalServerError, apiError{Error: op + ": " + err.Error()})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // the client has gone when this fails
}

// runView is the JSON form of a run served by the admin API and printed by
// `ssobot runs`.
type runView struct {
	ID              int64          `json:"id"`
	State           workflow.State `json:"state"`
	ApplicationName string         `json:"application_name"`
	ApplicationSlug string         `json:"application_slug"`
	TeamDomain      string         `json:"team_domain"`
	LoginMethodName string         `json:"login_method_name,omitempty"`
	ProviderName    string         `json:"provider_name,omitempty"`
	ClientID        string         `json:"client_id,omitempty"`
	RequestedBy     string         `json:"requested_by"`
	Channel         string         `json:"channel,omitempty"`
	CreatedAt       time.Time      `json:"created_at"`
	UpdatedAt       time.Time      `json:"updated_at"`
	Error           string         `json:"error,omitempty"`
	Problems        []string       `json:"problems,omitempty"`
	DashboardURL    string         `json:"dashboard_url,omitempty"`
	SlackMessage    string         `json:"slack_message,omitempty"` // "channel|ts" of the run's message
	Steps           []stepView     `json:"steps"`
	Approvals       []approvalView `json:"approvals"`
	Resources       resourcesView  `json:"resources"`
	Events          []eventView    `json:"events,omitempty"`
}

type stepView struct {
	Name       workflow.StepName   `json:"name"`
	Kind       workflow.StepKind   `json:"kind"`
	Status     workflow.StepStatus `json:"status"`
	Attempts   int                 `json:"attempts"`
	Error      string              `json:"error"`
	StartedAt  *time.Time          `json:"started_at,omitempty"`
	FinishedAt *time.Time          `json:"finished_at,omitempty"`
	Deadline   *time.Time          `json:"deadline,omitempty"`
	RemindAt   *time.Time          `json:"remind_at,omitempty"` // an open gate's reminder, until sent
}

type approvalView struct {
	Gate     workflow.StepName `json:"gate"`
	User     string            `json:"user"`
	Decision workflow.Decision `json:"decision"`
	At       time.Time         `json:"at"`
	Reason   string            `json:"reason,omitempty"`
	// Counts is false for an approval that no longer counts, NotCounted
	// saying why (workflow.Approval.NotCounted). Both are absent for a
	// rejection, which counts toward nothing: a client counting entries
	// with counts true counts approvals. A pointer: read from a bot older
	// than the field, it is unknown, not false.
	Counts     *bool  `json:"counts,omitempty"`
	NotCounted string `json:"not_counted,omitempty"`
}

func newApprovalView(a workflow.Approval) approvalView {
	v := approvalView{Gate: a.Gate, User: a.User, Decision: a.Decision, At: a.At, Reason: a.Reason}
	if a.Decision == workflow.Approve {
		why := a.NotCounted()
		counts := why == ""
		v.Counts, v.NotCounted = &counts, why
	}
	return v
}

// resourcesView holds null for what is not created yet.
type resourcesView struct {
	AuthentikProviderID          *int    `json:"authentik_provider_id"`
	AuthentikApplicationSlug     *string `json:"authentik_application_slug"`
	CloudflareIdentityProviderID *string `json:"cloudflare_identity_provider_id"`
}

type eventView struct {
	Seq     uint64             `json:"seq"`
	At      time.Time          `json:"at"`
	Type    workflow.EventType `json:"type"`
	Step    workflow.StepName  `json:"step,omitempty"`
	Actor   string             `json:"actor,omitempty"`
	Message string             `json:"message"`
}

// remindAt is an open gate's pending reminder; a closed gate keeps the
// time it was set for, which means nothing any more.
func remindAt(s *workflow.Step) *time.Time {
	if s.Status != workflow.StepWaiting {
		return nil
	}
	return timePtr(s.RemindAt)
}

func newRunView(r *workflow.Run, events []workflow.Event) runView {
	v := runView{
		ID:              r.ID,
		State:           r.State,
		ApplicationName: first(r.Params.ApplicationName, r.Request.ApplicationName),
		ApplicationSlug: first(r.Params.ApplicationSlug, r.Request.ApplicationSlug),
		TeamDomain:      first(r.Params.TeamDomain, r.Request.TeamDomain),
		LoginMethodName: first(r.Params.LoginMethodName, r.Request.LoginMethodName),
		ProviderName:    r.Params.ProviderName,
		ClientID:        r.Params.ClientID,
		RequestedBy:     r.Request.RequestedBy,
		Channel:         r.Request.Channel,
		CreatedAt:       r.CreatedAt,
		UpdatedAt:       r.UpdatedAt,
		Error:           r.Error,
		Problems:        r.Problems,
		DashboardURL:    r.DashboardURL,
		SlackMessage:    r.MessageRef,
		Steps:           make([]stepView, 0, len(r.Steps)),
		Approvals:       make([]approvalView, 0, len(r.Approvals)),
	}
	for i := range r.Steps {
		s := &r.Steps[i]
		v.Steps = append(v.Steps, stepView{
			Name: s.Name, Kind: s.Kind, Status: s.Status, Attempts: s.Attempts, Error: s.LastError(),
			StartedAt: timePtr(s.StartedAt), FinishedAt: timePtr(s.FinishedAt), Deadline: timePtr(s.Deadline),
			RemindAt: remindAt(s),
		})
	}
	for _, a := range r.Approvals {
		v.Approvals = append(v.Approvals, newApprovalView(a))
	}
	if id := r.Resources.AuthentikProviderID; id != 0 {
		v.Resources.AuthentikProviderID = &id
	}
	if s := r.Resources.AuthentikApplicationSlug; s != "" {
		v.Resources.AuthentikApplicationSlug = &s
	}
	if s := r.Resources.CloudflareIdentityProviderID; s != "" {
		v.Resources.CloudflareIdentityProviderID = &s
	}
	for _, e := range events {
		v.Events = append(v.Events, eventView{Seq: e.Seq, At: e.At, Type: e.Type, Step: e.Step, Actor: e.Actor, Message: e.Message})
	}
	return v
}

func first(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
