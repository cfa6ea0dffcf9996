package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/slack-go/slack"

	"github.com/ssobot/ssobot/bot"
	"github.com/ssobot/ssobot/store"
	"github.com/ssobot/ssobot/workflow"
	"github.com/ssobot/ssobot/workflow/authentik"
	"github.com/ssobot/ssobot/workflow/cloudflare"
	"github.com/ssobot/ssobot/workflow/oidc"
)

// Timeouts of the server and its clients.
const (
	checkTimeout      = 30 * time.Second // all start-up credential checks, at least (see checksTimeout)
	shutdownTimeout   = 20 * time.Second // in-flight Slack requests at shutdown
	storeLockTimeout  = 2 * time.Second
	readHeaderTimeout = 10 * time.Second
)

// serveCmd implements `ssobot serve`.
func serveCmd(ctx context.Context, args []string, getenv func(string) string, readFile func(string) ([]byte, error), stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ssobot serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	helpTo(fs, args, stdout)
	fs.Usage = func() { printServeUsage(fs.Output()) }
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	cfg, err := LoadConfig(getenv, readFile)
	if err != nil {
		var ce *ConfigError
		if errors.As(err, &ce) {
			noun := "problems"
			if len(ce.Problems) == 1 {
				noun = "problem"
			}
			fmt.Fprintf(stderr, "ssobot serve: the configuration is incomplete or wrong (%d %s):\n", len(ce.Problems), noun)
			for _, p := range ce.Problems {
				fmt.Fprintf(stderr, "  - %s\n", p)
			}
			fmt.Fprint(stderr, "\nRun `ssobot serve -h` for every variable, or `ssobot demo` to try ssobot without any.\n")
			return exitUsage
		}
		fmt.Fprintf(stderr, "ssobot serve: %v\n", err)
		return exitUsage
	}
	log := newLogger(stderr, cfg.LogFormat, cfg.LogLevel)
	log.Info("starting", "version", Version(), "socket_mode", cfg.SocketMode(), "db", cfg.DBPath,
		"authentik_url", cfg.AuthentikURL, "cloudflare_account_id", cfg.CloudflareAccountID,
		"approvers", len(cfg.ApproverUsers)+len(cfg.ApproverGroups), "approvals_required", cfg.ApprovalsRequired,
		"approval_ttl", cfg.ApprovalTTL, "approval_reminder", cfg.ApprovalReminder, "allow_self_approval", cfg.AllowSelfApproval,
		"api_timeout", cfg.apiTimeout())
	for _, w := range cfg.Warnings {
		log.Warn("check the configuration", "warning", w)
	}

	a, err := newApp(cfg, appOptions{Logger: log})
	if err != nil {
		log.Error("start failed", workflow.KeyError, err)
		return exitFailure
	}
	defer a.Close()

	if code, ok := a.startupChecks(ctx, checksTimeout(cfg)); !ok {
		return code
	}

	var slackLn net.Listener
	if !cfg.SocketMode() {
		if slackLn, err = net.Listen("tcp", cfg.Listen); err != nil {
			log.Error("listen for Slack requests (SSOBOT_LISTEN)", "addr", cfg.Listen, workflow.KeyError, err)
			return exitFailure
		}
	}
	adminLn, err := net.Listen("tcp", cfg.AdminListen)
	if err != nil {
		if slackLn != nil {
			slackLn.Close()
		}
		log.Error("listen for the admin API (SSOBOT_ADMIN_LISTEN)", "addr", cfg.AdminListen, workflow.KeyError, err)
		return exitFailure
	}
	if err := a.Serve(ctx, slackLn, adminLn); err != nil {
		log.Error("stopped on error", workflow.KeyError, err)
		return exitFailure
	}
	log.Info("stopped")
	return exitOK
}

func printServeUsage(w io.Writer) {
	fmt.Fprint(w, "usage: ssobot serve\n\nConfiguration comes from environment variables. Every secret can instead be\ngiven as NAME_FILE, the path of a file holding it (Docker and Kubernetes secrets).\n\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "VARIABLE\tREQUIRED\tDEFAULT\tMEANING")
	for _, v := range envVars {
		name := v.Name
		if v.Secret {
			name += " (or _FILE)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", name, v.Required, dash(v.Default), v.Help)
	}
	tw.Flush()
}

// appOptions are what the demo and tests inject beyond the configuration.
type appOptions struct {
	Logger *slog.Logger
	// Roots replaces the system roots for authentik (API and public OIDC
	// URLs); nil keeps the system's, which honour SSL_CERT_FILE.
	Roots *x509.CertPool
	Clock workflow.Clock // nil: the system clock
}

// app is the wired bot: store, clients, bot, engine and metrics.
type app struct {
	cfg        Config
	log        *slog.Logger
	store      *store.Store
	metrics    *Metrics
	slack      *slack.Client
	authentik  *authentik.Client
	cloudflare *cloudflare.Client
	bot        *bot.Bot
	// foreground lets acknowledgements go before background API calls.
	foreground *bot.Foreground
	// oidcTransport carries the checks of authentik's public OIDC URLs.
	oidcTransport http.RoundTripper
	engine        *workflow.Engine

	mu       sync.Mutex
	stopping bool
}

// dbPreallocate is how far ahead of its last page the database file is
// kept written (store.Options.Preallocate): a new run and its events grow
// the file by about 2.5 KB, and the zeros are topped up once half is used,
// so a burst of at least some 1,600 commands finds them written.
// Only on Linux, where it was measured (ext4); elsewhere bbolt grows the
// file as usual.
func dbPreallocate() int64 {
	if runtime.GOOS != "linux" {
		return 0
	}
	return 8 << 20
}

// newApp opens the database and wires every part. The caller closes the
// app, which closes the database.
func newApp(cfg Config, opts appOptions) (*app, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// Verify reads every page (about 10 ms per 1,000 runs), so a damaged
	// page deep in the file stops the start instead of failing later reads.
	st, err := store.Open(cfg.DBPath, store.Options{Timeout: storeLockTimeout, Verify: true, Preallocate: dbPreallocate()})
	switch {
	case errors.Is(err, store.ErrLocked):
		return nil, fmt.Errorf("%w (SSOBOT_DB): run one replica per database", err)
	case errors.Is(err, store.ErrInvalid), errors.Is(err, store.ErrSchema):
		return nil, fmt.Errorf("%s (SSOBOT_DB) cannot be used; it was left untouched: %w", cfg.DBPath, err)
	case err != nil:
		return nil, fmt.Errorf("open database %s (SSOBOT_DB): %w", cfg.DBPath, err)
	}
	a := &app{cfg: cfg, log: log, store: st, metrics: NewMetrics(st)}
	if err := a.wire(opts); err != nil {
		st.Close()
		return nil, err
	}
	return a, nil
}

// engineConfig is the engine's configuration over the app's clients, store,
// bot and metrics.
func (a *app) engineConfig(opts appOptions) workflow.Config {
	cfg := a.cfg
	// The public OIDC URLs are checked the way Cloudflare fetches them: with
	// the system roots, unless the demo injects its own.
	endpoints := oidc.New(&http.Client{Timeout: oidc.Timeout, Transport: a.foreground.Transport(a.oidcTransport)})
	return workflow.Config{
		Store:     a.store,
		Authentik: a.authentik,
		Access:    a.cloudflare,
		Endpoints: endpoints,
		Approvers: a.bot.Approvers(),
		Notifier:  a.bot,
		Observer:  a.metrics,
		Yield:     a.foreground.Yield,
		Clock:     opts.Clock,
		Logger:    a.log.With("component", "engine"),
		Defaults: workflow.Defaults{
			AuthentikURL:      cfg.AuthentikURL,
			AuthorizationFlow: cfg.AuthorizationFlow,
			InvalidationFlow:  cfg.InvalidationFlow,
			SigningKey:        cfg.SigningKey,
		},
		ApprovalsRequired: cfg.ApprovalsRequired,
		AllowSelfApproval: cfg.AllowSelfApproval,
		ApprovalTTL:       cfg.ApprovalTTL,
		ApprovalReminder:  cfg.ApprovalReminder,
		// A server may apply a create it did not answer for about as long
		// as a client waits for the answer.
		UnansweredCreateWait: cfg.apiTimeout(),
	}
}

// The connections to each API host: at most, and kept idle. The same
// number: with fewer kept than opened, every burst beyond the idle pool
// paid new TLS handshakes (post-quantum key exchange and all) for
// connections closed again right after. 16 covers a step's parallel reads
// (at most 9) with room; a larger burst queues for a connection.
const (
	maxConnsPerHost     = 16
	maxIdleConnsPerHost = 16
)

func (a *app) wire(opts appOptions) error {
	cfg := a.cfg
	base := http.DefaultTransport.(*http.Transport).Clone()
	// Concurrent steps talk to the same hosts: a burst waits for one of a
	// bounded set of connections rather than opening more (each a TLS
	// handshake for authentik), and they stay open between bursts (Go's
	// default keeps two).
	base.MaxIdleConnsPerHost = maxIdleConnsPerHost
	base.MaxConnsPerHost = maxConnsPerHost
	tlsBase := base
	if opts.Roots != nil {
		tlsBase = base.Clone()
		tlsBase.TLSClientConfig = &tls.Config{RootCAs: opts.Roots, MinVersion: tls.VersionTLS12}
	}
	// authentik's public URLs get a pool of their own, with the same limits.
	a.oidcTransport = tlsBase.Clone()
	// Only background work calls these APIs; it waits for the
	// acknowledgements in flight before each call (the wait is not metered).
	a.foreground = bot.NewForeground()
	fg := a.foreground
	client := func(system string, rt http.RoundTripper) *http.Client {
		return &http.Client{Timeout: cfg.apiTimeout(), Transport: fg.Transport(a.metrics.Transport(system, rt))}
	}

	// Slack's Web API never redirects, and following a redirect could send
	// the token, which auth.test carries in its form body, to its target.
	// The copies of messages Slack echoes are blanked as they arrive, before
	// the metrics read an answer for its error and slack-go decodes it.
	slackHTTP := client(systemSlack, bot.WithoutEchoes(base))
	slackHTTP.Transport = workflow.RefuseRedirects(slackHTTP.Transport)
	slackOpts := []slack.Option{slack.OptionHTTPClient(slackHTTP)}
	if cfg.SlackAPIURL != "" {
		slackOpts = append(slackOpts, slack.OptionAPIURL(cfg.SlackAPIURL))
	}
	a.slack = slack.New(cfg.SlackBotToken.Reveal(), slackOpts...)

	var err error
	a.authentik, err = authentik.New(cfg.AuthentikURL, cfg.AuthentikToken, client(systemAuthentik, tlsBase))
	if err != nil {
		return fmt.Errorf("authentik client (AUTHENTIK_URL): %w", err)
	}
	a.cloudflare = cloudflare.New(cfg.CloudflareAccountID, cfg.CloudflareAPIToken, cfg.CloudflareBaseURL, client(systemCloudflare, base))

	a.bot, err = bot.New(bot.Config{
		Client:              a.slack,
		SigningSecret:       cfg.SlackSigningSecret,
		ApproverUsers:       cfg.ApproverUsers,
		ApproverGroups:      cfg.ApproverGroups,
		ApprovalsRequired:   cfg.ApprovalsRequired,
		AllowSelfApproval:   cfg.AllowSelfApproval,
		AllowedChannels:     cfg.Channels,
		AllowedRequesters:   cfg.Requesters,
		AuthentikURL:        cfg.AuthentikURL,
		CloudflareAccountID: cfg.CloudflareAccountID,
		Logger:              a.log.With("component", "bot"),
		Clock:               opts.Clock,
		Foreground:          fg,
	})
	if err != nil {
		return fmt.Errorf("slack bot: %w", err)
	}
	a.engine, err = workflow.New(a.engineConfig(opts))
	if err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	a.bot.Attach(a.engine)
	return nil
}

// startupChecks runs the credential checks, all within timeout (a
// parameter so tests can stop at a server that never answers). It reports
// whether serve goes on and, when not, the exit code.
func (a *app) startupChecks(ctx context.Context, timeout time.Duration) (int, bool) {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	err := a.CheckCredentials(cctx)
	cancel()
	if err != nil {
		return reportCheckFailure(ctx, err, a.log), false
	}
	return exitOK, true
}

// reportCheckFailure logs why the start-up checks failed, one line per
// credential naming its variable, and returns the exit code. A stop asked
// for while they ran (SIGTERM in a rollout) is no failure and says nothing
// of the credentials.
func reportCheckFailure(ctx context.Context, err error, log *slog.Logger) int {
	if ctx.Err() != nil {
		log.Info("stopped before the start-up checks finished", "cause", context.Cause(ctx))
		return exitOK
	}
	for _, e := range unjoin(err) {
		var ce *CredentialError
		switch {
		case errors.As(e, &ce) && !refused(ce.Err):
			// The answer, or its absence, says nothing of the credential:
			// the URL, a proxy, the network or a certificate is at fault,
			// and a new token would not help.
			log.Error("could not check a credential: no usable answer from the service", "credential", ce.Variable, "check", ce.Check, workflow.KeyError, ce.Err, "hint", ce.Hint())
		case errors.As(e, &ce):
			log.Error("credential refused", "credential", ce.Variable, "check", ce.Check, workflow.KeyError, ce.Err)
		default:
			log.Error("credential check failed", workflow.KeyError, e)
		}
	}
	return exitFailure
}

// CredentialError names the credential that failed its start-up check.
type CredentialError struct {
	Variable string // the environment variable holding it
	Check    string // what was tried
	Err      error
	// At is where the check asked, and Call the failing call's path
	// relative to it: what to check when the answer says nothing of the
	// credential.
	At   apiURL
	Call string
}

func (e *CredentialError) Error() string {
	return fmt.Sprintf("%s: %s: %v", e.Variable, e.Check, e.Err)
}

func (e *CredentialError) Unwrap() error { return e.Err }

// CheckCredentials tries every credential at once: Slack auth.test,
// authentik users/me, Cloudflare token verify and organization read. It
// returns every failure, each naming its variable and the reason.
func (a *app) CheckCredentials(ctx context.Context) error {
	type check struct {
		variable, what string
		at             apiURL
		// fn returns who the credential is, or the path of the call that
		// failed and why.
		fn func(context.Context) (who, call string, err error)
	}
	slackAt := apiURL{"Slack", "SLACK_API_URL", a.cfg.SlackAPIURL, "Slack's Web API base URL (" + slack.APIURL + ")"}
	if slackAt.URL == "" {
		slackAt.URL = slack.APIURL
	}
	authentikAt := apiURL{"authentik", "AUTHENTIK_URL", a.cfg.AuthentikURL, "authentik's base URL, the address people open (e.g. https://auth.example.com)"}
	cloudflareAt := apiURL{"Cloudflare", "CLOUDFLARE_BASE_URL", a.cfg.CloudflareBaseURL, "Cloudflare's API base URL (" + strings.TrimSuffix(cloudflare.DefaultBaseURL, "/") + ")"}
	if cloudflareAt.URL == "" {
		cloudflareAt.URL = strings.TrimSuffix(cloudflare.DefaultBaseURL, "/")
	}
	checks := []check{
		{"SLACK_BOT_TOKEN", "Slack auth.test", slackAt, func(ctx context.Context) (string, string, error) {
			r, err := a.slack.AuthTestContext(ctx)
			switch {
			case err != nil:
				return "", "auth.test", err
			case r.UserID == "" || (r.TeamID == "" && r.EnterpriseID == ""):
				// Slack names the bot and its workspace, or for an Enterprise
				// Grid org-wide install maybe only the organization; a stub
				// answering {"ok":true} to everything names neither.
				return "", "auth.test", errNoSlackIdentity
			case r.TeamID == "":
				return fmt.Sprintf("bot %s (%s) in Enterprise Grid organization %s", r.User, r.UserID, first(r.Team, r.EnterpriseID)), "", nil
			}
			return fmt.Sprintf("bot %s (%s) in workspace %s", r.User, r.UserID, r.Team), "", nil
		}},
		{"AUTHENTIK_TOKEN", "authentik GET /api/v3/core/users/me/ at " + a.cfg.AuthentikURL, authentikAt, func(ctx context.Context) (string, string, error) {
			const call = "/api/v3/core/users/me/"
			u, err := a.authentik.Me(ctx)
			switch {
			case err != nil:
				return "", call, err
			case u.Username == "":
				return "", call, errNoAuthentikUser
			}
			return fmt.Sprintf("user %s (pk %d)", u.Username, u.PK), "", nil
		}},
		{"CLOUDFLARE_API_TOKEN", "Cloudflare token verify and Access organization read", cloudflareAt, func(ctx context.Context) (string, string, error) {
			if err := a.cloudflare.VerifyToken(ctx); err != nil {
				return "", "user/tokens/verify", fmt.Errorf("token verify: %w", err)
			}
			org, err := a.cloudflare.Organization(ctx)
			if err != nil {
				return "", "accounts/" + a.cfg.CloudflareAccountID + "/access/organizations", fmt.Errorf("read the Zero Trust organization of account %s (CLOUDFLARE_ACCOUNT_ID; the token needs \"Access: Organizations, Identity Providers, and Groups Write\"): %w", a.cfg.CloudflareAccountID, err)
			}
			return "team domain " + org.AuthDomain, "", nil
		}},
	}
	if a.cfg.SocketMode() {
		checks = append(checks, check{"SLACK_APP_TOKEN", "Slack apps.connections.open (Socket Mode)", slackAt, func(ctx context.Context) (string, string, error) {
			if err := a.bot.CheckAppToken(ctx, a.cfg.SlackAppToken); err != nil {
				return "", "apps.connections.open", err
			}
			return "Socket Mode connection granted", "", nil
		}})
	}
	errs := make([]error, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Go(func() {
			start := time.Now()
			who, call, err := c.fn(ctx)
			if err != nil {
				errs[i] = &CredentialError{Variable: c.variable, Check: c.what, Err: err, At: c.at, Call: call}
				return
			}
			a.log.Info("credential ok", "credential", c.variable, "identity", who, slog.Duration("duration", time.Since(start).Round(time.Millisecond)))
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// adminHosts are the host names the admin API answers to besides the
// built-in ones: SSOBOT_ADMIN_HOSTS and, when SSOBOT_ADMIN_LISTEN listens
// on a name, that name, which `ssobot health` and `ssobot runs` then ask
// for.
func adminHosts(cfg Config) []string {
	hosts := slices.Clone(cfg.AdminHosts)
	if h, _, err := net.SplitHostPort(cfg.AdminListen); err == nil && h != "" && !isIPLiteral(h) {
		hosts = append(hosts, adminHostName(h))
	}
	return hosts
}

// Serve runs the engine, the bot's delivery worker, the Slack endpoints
// (on slackLn; nil in Socket Mode) and the admin API (on adminLn) until ctx
// ends or one of them fails. Then it stops accepting Slack requests, lets
// running steps reach their recorded results, and stops the rest. It does
// not close the store: Close does.
func (a *app) Serve(ctx context.Context, slackLn, adminLn net.Listener) error {
	errc := make(chan error, 4)

	admin := &http.Server{
		Handler: newAdminHandler(adminConfig{
			Runs:    a.store,
			Backup:  a.store.Backup,
			Ready:   a.ready,
			Metrics: a.metrics.Handler(),
			Logger:  a.log.With("component", "admin"),
			Hosts:   adminHosts(a.cfg),
			// Service names only where other machines may use them.
			ServiceNames: adminServiceNames(adminLn.Addr(), a.cfg),
		}),
		ReadHeaderTimeout: readHeaderTimeout,
	}
	go func() {
		if err := admin.Serve(adminLn); !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("admin listener: %w", err)
		}
	}()
	// Whether service names are answered explains a 421 for one.
	a.log.Info("admin API listening", "addr", adminLn.Addr().String(), "service_names", adminServiceNames(adminLn.Addr(), a.cfg))

	engineCtx, stopEngine := context.WithCancel(context.WithoutCancel(ctx))
	engineDone := make(chan error, 1)
	go func() { engineDone <- a.engine.Run(engineCtx) }()

	botCtx, stopBot := context.WithCancel(context.WithoutCancel(ctx))
	botDone := make(chan error, 1)
	go func() { botDone <- a.bot.Run(botCtx) }()

	go releaseWhenIdle(botCtx, idleRelease, func() uint64 { return a.store.Writes() + a.foreground.Served() }, func() {
		releaseFreeMemory()
		// The store closes only after botCtx is done: an error then is shutdown's.
		if err := a.store.ReleaseMapped(); err != nil && botCtx.Err() == nil {
			a.log.Warn("could not release the database's pages from memory", slog.Any(workflow.KeyError, err))
		}
	})

	var slackSrv *http.Server
	socketCtx, stopSocket := context.WithCancel(context.WithoutCancel(ctx))
	defer stopSocket()
	var socketDone chan error // nil in HTTP mode: never ready
	if slackLn != nil {
		slackSrv = &http.Server{
			Handler:           a.bot.Handler(),
			ReadHeaderTimeout: readHeaderTimeout,
			// Slack waits 3 s for an answer; anything slower is a stuck client.
			ReadTimeout:  30 * time.Second,
			WriteTimeout: 30 * time.Second,
			IdleTimeout:  2 * time.Minute,
		}
		go func() {
			if err := slackSrv.Serve(slackLn); !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("slack listener: %w", err)
			}
		}()
		a.log.Info("slack endpoints listening", "addr", slackLn.Addr().String(),
			"commands", slackCommandsPath, "interactions", slackInteractionsPath)
	} else {
		socketDone = make(chan error, 1)
		go func() { socketDone <- a.bot.RunSocketMode(socketCtx, a.cfg.SlackAppToken) }()
		a.log.Info("slack socket mode connecting")
	}

	// Wait for the signal or for the first component to stop: one that
	// stops by itself is a failure. The *Ended flags record who returned.
	var (
		failure                            error
		engineEnded, botEnded, socketEnded bool
	)
	select {
	case <-ctx.Done():
		a.log.Info("shutting down", "reason", context.Cause(ctx).Error())
	case failure = <-errc:
	case err := <-engineDone:
		engineEnded = true
		failure = fmt.Errorf("engine stopped: %w", orUnexpected(err))
	case err := <-botDone:
		botEnded = true
		failure = fmt.Errorf("bot delivery stopped: %w", orUnexpected(err))
	case err := <-socketDone:
		socketEnded = true
		failure = fmt.Errorf("slack socket mode stopped: %w", orUnexpected(err))
	}
	a.mu.Lock()
	a.stopping = true
	a.mu.Unlock()

	// 1. Stop taking requests from Slack; requests already in flight finish.
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if slackSrv != nil {
		if err := slackSrv.Shutdown(sctx); err != nil {
			a.log.Warn("slack listener shutdown", workflow.KeyError, err)
		}
	}
	stopSocket()
	if socketDone != nil && !socketEnded {
		if err := <-socketDone; err != nil && !errors.Is(err, context.Canceled) {
			a.log.Warn("slack socket mode", workflow.KeyError, err)
		}
	}
	// 2. What the handlers acknowledged and left for later (a click's
	// decision, a cancel) reaches the engine before it stops.
	if err := a.bot.Drain(sctx); err != nil {
		a.log.Warn("stopping before background work for Slack finished", workflow.KeyError, err)
	}
	// 3. The engine returns once running steps have recorded their result.
	stopEngine()
	if !engineEnded {
		if err := <-engineDone; err != nil && failure == nil {
			failure = fmt.Errorf("engine: %w", err)
		}
	}
	// 4. The delivery worker stops last, so the final messages are queued.
	stopBot()
	if !botEnded {
		if err := <-botDone; err != nil && !errors.Is(err, context.Canceled) && failure == nil {
			failure = fmt.Errorf("bot delivery: %w", err)
		}
	}
	if err := admin.Shutdown(sctx); err != nil {
		a.log.Warn("admin listener shutdown", workflow.KeyError, err)
	}
	return failure
}

// unjoin lists the errors joined by errors.Join.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func orUnexpected(err error) error {
	if err == nil {
		return errors.New("unexpectedly")
	}
	return err
}

// ready explains why the bot cannot take work, or returns nil.
func (a *app) ready() error {
	a.mu.Lock()
	stopping := a.stopping
	a.mu.Unlock()
	var problems []string
	if stopping {
		problems = append(problems, "shutting down")
	}
	if !a.engine.Ready() {
		problems = append(problems, "engine not running")
	}
	if a.cfg.SocketMode() && !a.bot.SocketConnected() {
		problems = append(problems, "socket mode not connected to Slack")
	}
	if _, err := a.store.CountByState(context.Background()); err != nil {
		problems = append(problems, "database: "+err.Error())
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// Close closes the database.
func (a *app) Close() error {
	if err := a.store.Close(); err != nil {
		return fmt.Errorf("close database: %w", err)
	}
	return nil
}

// checksTimeout bounds the start-up credential checks: checkTimeout, or
// two API timeouts when SSOBOT_API_TIMEOUT is raised above its default
// (Cloudflare's check makes two calls in a row), so that a slow authentik
// that the setting was raised for does not keep ssobot from starting.
func checksTimeout(cfg Config) time.Duration {
	if d := cfg.apiTimeout(); d > defaultAPITimeout {
		return 2 * d
	}
	return checkTimeout
}
