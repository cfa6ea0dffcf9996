//go:build !ssobot_server

package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/ssobot/ssobot/bot"
	"github.com/ssobot/ssobot/bot/slacktest"
	"github.com/ssobot/ssobot/workflow"
	"github.com/ssobot/ssobot/workflow/authentik/authentiktest"
	"github.com/ssobot/ssobot/workflow/cloudflare/cloudflaretest"
	"github.com/ssobot/ssobot/workflow/contracttest"
)

// The demo's cast and places.
const (
	demoAccountID = "0d5e1a7c2b9f4e3d8c6b5a4f3e2d1c0b"
	demoTeam      = "acme"
	demoChannel   = "C0PLATFORM"
	demoRequester = "U0ALICE"
	demoApprover  = "U0BOB"
	demoTimeout   = 30 * time.Second
)

// demoAppHint answers `ssobot demo Grafana`, the form /sso-setup new takes.
func demoAppHint(stray []string) string {
	name := strings.Join(stray, " ")
	if strings.ContainsAny(name, " \t'\"$`\\") {
		name = strconv.Quote(name)
	}
	return "the application name goes in -app: ssobot demo -app " + name
}

// demoCmd implements `ssobot demo`: the real bot, engine and bbolt store
// against in-process authentik (TLS), Cloudflare and Slack fakes over real
// HTTP, driven by a signed slash command and signed button clicks.
func demoCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ssobot demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	helpTo(fs, args, stdout)
	verbose := fs.Bool("v", false, "also print the bot's logs (to stderr)")
	app := fs.String("app", "Grafana", "the application to set up")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "usage: ssobot demo [-v] [-app NAME]\n\nRuns one complete setup against built-in fakes of authentik, Cloudflare and Slack.\nThe database is a temporary file unless SSOBOT_DB names a new one to keep.\n\n")
		fs.PrintDefaults()
	}
	if code, ok := parseFlagsHint(fs, args, demoAppHint); !ok {
		return code
	}
	ctx, cancel := context.WithTimeout(ctx, demoTimeout)
	defer cancel()
	// Everything printed is also kept, to prove no secret was among it.
	var printed bytes.Buffer
	out := newTranscript(stdout)
	out.w = io.MultiWriter(stdout, &printed)
	d := &demo{out: out, app: *app, dbPath: getenv("SSOBOT_DB"), printed: &printed}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelDebug
	}
	d.log = newLogger(io.MultiWriter(stderr, &printed), "text", level)
	if err := d.run(ctx); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("the run did not finish within %s: %w", demoTimeout, err)
		}
		out.fail(err)
		return exitFailure
	}
	return exitOK
}

type demo struct {
	out     *transcript
	log     *slog.Logger
	app     string
	dbPath  string
	printed *bytes.Buffer // stdout and logs

	ak       *authentiktest.Server
	cf       *cloudflaretest.Server
	sl       *slacktest.Server
	a        *app
	secret   string
	slackURL string
	adminURL string
	http     *http.Client

	runID   int64
	rootTS  string
	clicked map[string]bool   // button values already clicked
	selfTry bool              // alice has clicked Approve on her own run
	replyTo map[string]string // response_url → the person it answers
	pending map[string]bool   // response_urls of clicks not yet answered
}

func (d *demo) run(ctx context.Context) (err error) {
	start := time.Now()
	d.clicked = map[string]bool{}
	d.replyTo = map[string]string{}
	d.pending = map[string]bool{}
	d.http = &http.Client{Timeout: 10 * time.Second}

	// The fakes: authentik over TLS with a generated certificate, Cloudflare
	// and Slack over plain HTTP on loopback.
	d.ak = authentiktest.New()
	defer d.ak.Close()
	d.cf = cloudflaretest.New(demoAccountID, cloudflaretest.WithTeam(demoTeam))
	defer d.cf.Close()
	d.sl = slacktest.NewServer()
	defer d.sl.Close()
	d.sl.AddUser(slacktest.User{ID: demoRequester, Name: "alice", RealName: "Alice Liddell", Email: "alice@acme.example"})
	d.sl.AddUser(slacktest.User{ID: demoApprover, Name: "bob", RealName: "Bob Bobson", Email: "bob@acme.example"})
	d.sl.AddChannel(demoChannel, "platform", true)
	d.out.names = map[string]string{demoRequester: "alice", demoApprover: "bob", d.sl.BotUserID(): "ssobot"}
	d.out.channels = map[string]string{demoChannel: "platform"}

	roots, err := fakeRoots(d.ak)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}

	if d.dbPath != "" {
		// The demo's engine would resume the open runs of a database it did
		// not make, against its fakes, and write its own run among theirs:
		// SSOBOT_DB may well name the service's database in this shell.
		if _, err := os.Stat(d.dbPath); !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("SSOBOT_DB=%s already exists (or cannot be checked); the demo only writes a new database, so it never touches the service's: give a path that does not exist yet", d.dbPath)
		}
	} else {
		dir, err := os.MkdirTemp("", "ssobot-demo-")
		if err != nil {
			return fmt.Errorf("temporary directory: %w", err)
		}
		defer os.RemoveAll(dir)
		d.dbPath = filepath.Join(dir, "ssobot.db")
	}
	d.secret = randomHex(16)

	cfg := fakesConfig(d.ak, d.cf, d.sl, d.secret, d.dbPath, demoRequester, demoApprover)

	d.out.title("ssobot demo")
	d.out.note("The real bot, engine and bbolt store, against in-process fakes over real HTTP:")
	d.out.note("  authentik   %s  (TLS, generated certificate)", d.ak.URL())
	d.out.note("  Cloudflare  %s  (account %s, team %s.cloudflareaccess.com)", d.cf.URL(), demoAccountID, demoTeam)
	d.out.note("  Slack       %s  (#platform; alice and bob are approvers; alice requests, bob approves)", d.sl.APIURL())
	d.out.note("  database    %s", d.dbPath)

	d.a, err = newApp(cfg, appOptions{Logger: d.log, Roots: roots})
	if err != nil {
		return err
	}
	defer d.a.Close()
	if err := d.a.CheckCredentials(ctx); err != nil {
		return err
	}
	d.out.note("Start-up checks passed: Slack auth.test, authentik users/me, Cloudflare token verify and organization.")

	slackLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	adminLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		slackLn.Close()
		return err
	}
	d.slackURL = "http://" + slackLn.Addr().String()
	d.adminURL = "http://" + adminLn.Addr().String()
	d.out.note("  bot         %s/slack/commands, %s/slack/interactions", d.slackURL, d.slackURL)
	d.out.note("  admin API   %s", d.adminURL)
	d.out.blank()

	// Subscribe before anything can call Slack, so the count of calls
	// matches what the feed delivers.
	base := len(d.sl.Calls())
	feed, stopFeed := d.sl.Subscribe()
	defer stopFeed()

	serveCtx, stopServe := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- d.a.Serve(serveCtx, slackLn, adminLn) }()
	serving := true
	// On an early return the bot stops before the store closes and before
	// the failure is printed: its goroutines log to the same output.
	defer func() {
		stopServe()
		if serving {
			<-served
		}
	}()

	ack, err := d.slashCommand(ctx, "new "+bot.QuoteArg(d.app))
	if err != nil {
		return err
	}
	if !runStarted.MatchString(ack) {
		// Nothing would follow: say so now, not when the demo times out.
		return fmt.Errorf("the bot started no run for -app %q: its answer to alice is above", d.app)
	}

	seen := 0
	finished := false
	for !finished {
		select {
		case c, ok := <-feed:
			if !ok {
				return errors.New("the Slack fake closed")
			}
			seen++
			if err := d.handle(ctx, c); err != nil {
				return err
			}
			// Like a person, bob reacts to what is on screen: once every
			// message sent so far is printed.
			if seen == len(d.sl.Calls())-base {
				if err := d.approveIfAsked(ctx); err != nil {
					return err
				}
			}
			if finished, err = d.finished(ctx); err != nil {
				return err
			}
		case err := <-served:
			serving = false
			return fmt.Errorf("the bot stopped early: %w", orUnexpected(err))
		case <-ctx.Done():
			return ctx.Err()
		}
	}

	// Read the run and the metrics from the admin API, as an operator would.
	var view runView
	if err := d.getJSON(ctx, fmt.Sprintf("/api/runs/%d", d.runID), &view); err != nil {
		return err
	}
	metrics, err := d.get(ctx, "/metrics")
	if err != nil {
		return err
	}

	// Shut down as on SIGTERM; then print what the bot still sent.
	stopServe()
	select {
	case err := <-served:
		serving = false
		if err != nil {
			return fmt.Errorf("shutdown: %w", err)
		}
	case <-ctx.Done():
		return ctx.Err()
	}
	for total := len(d.sl.Calls()) - base; seen < total; seen++ {
		select {
		case c := <-feed:
			if err := d.handle(ctx, c); err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := d.report(view, apiCalls(metrics)); err != nil {
		return err
	}
	if err := d.checkSecrets(); err != nil {
		return err
	}
	if err := d.checkContracts(); err != nil {
		return err
	}
	// The name the run has, which is what authentik and Cloudflare now
	// hold: a flag mangled on its way through Slack would be caught here.
	if name := strings.TrimSpace(d.app); view.ApplicationName != name {
		return fmt.Errorf("run #%d set up the application %q, not %q as given with -app", view.ID, view.ApplicationName, name)
	}
	d.out.success(fmt.Sprintf("Done in %.1fs: %s is set up for single sign-on.", time.Since(start).Seconds(), view.ApplicationName))
	return nil
}

// checkContracts reports the fakes' validation of every request and
// response against the OpenAPI contracts, when they were found.
func (d *demo) checkContracts() error {
	errs := append(d.ak.ContractErrors(), d.cf.ContractErrors()...)
	if len(errs) > 0 {
		return fmt.Errorf("contract violations: %w", errors.Join(errs...))
	}
	var checked []string
	if v := d.ak.Validating(); len(v) > 0 {
		checked = append(checked, "authentik ("+strings.Join(v, ", ")+")")
	}
	if d.cf.Validating() {
		checked = append(checked, "Cloudflare")
	}
	if len(checked) > 0 {
		d.out.note("Every request and response matched the OpenAPI contracts of %s.", strings.Join(checked, " and "))
		return nil
	}
	// Say so, rather than leave a missing check to be noticed by its absence.
	why := "found, but they could not be loaded"
	if _, err := contracttest.Dir(); err != nil {
		why = err.Error()
	}
	d.out.note("Requests were not checked against the OpenAPI contracts (%s): they are read from ../shared/contracts beside the repository, or from $%s.", why, contracttest.EnvDir)
	return nil
}

// checkSecrets proves the client secret reached Cloudflare intact and that
// no secret appears in what was printed or logged, nor in the database.
func (d *demo) checkSecrets() error {
	secrets := map[string]string{
		"the Slack bot token":      d.sl.BotToken(),
		"the Slack signing secret": d.secret,
		"the authentik token":      d.ak.Token(),
		"the Cloudflare API token": d.cf.Token(),
	}
	var akSecret string
	for _, p := range d.ak.Providers() {
		akSecret = p.ClientSecret
		secrets["the client secret of provider "+strconv.Itoa(p.PK)] = p.ClientSecret
	}
	for _, p := range d.cf.IdentityProviders() {
		if p.Config.ClientSecret != akSecret {
			return fmt.Errorf("login method %s holds a client secret that differs from authentik's", p.ID)
		}
	}
	db, err := os.ReadFile(d.dbPath)
	if err != nil {
		return fmt.Errorf("read the database: %w", err)
	}
	for what, v := range secrets {
		if v == "" {
			continue
		}
		if bytes.Contains(d.printed.Bytes(), []byte(v)) {
			return fmt.Errorf("%s appeared in the output", what)
		}
		if bytes.Contains(db, []byte(v)) {
			return fmt.Errorf("%s was written to the database", what)
		}
	}
	d.out.note("The client secret went from authentik to Cloudflare intact; no token or secret appears in the output, the logs or the database.")
	return nil
}

func (d *demo) get(ctx context.Context, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.adminURL+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := d.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("admin API %s: %w", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("admin API %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("admin API %s: %s", path, resp.Status)
	}
	return b, nil
}

func (d *demo) getJSON(ctx context.Context, path string, v any) error {
	b, err := d.get(ctx, path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("admin API %s: %w", path, err)
	}
	return nil
}

// slashCommand sends alice's signed /sso-setup to the bot's HTTP endpoint.
// runStarted is the acknowledgement of a `new` that started a run.
var runStarted = regexp.MustCompile(`^Run #\d+ started`)

// slashCommand sends alice's signed command, typed as text, and returns
// the bot's immediate answer.
func (d *demo) slashCommand(ctx context.Context, text string) (string, error) {
	cmd := d.sl.NewSlashCommand(slashCommand, slacktest.TypedText(text), demoRequester, demoChannel)
	d.replyTo[cmd.ResponseURL] = "alice"
	d.out.user("alice", "#platform", slashCommand+" "+text)
	body := []byte(slacktest.SlashCommandForm(cmd).Encode())
	return d.post(ctx, slackCommandsPath, body, "alice")
}

// click sends a person's signed click on a button of the run's message.
func (d *demo) click(ctx context.Context, ts string, btn slacktest.Button, user, name string) error {
	a, err := d.sl.ClickButton(demoChannel, ts, btn.ActionID, user)
	if err != nil {
		return err
	}
	d.replyTo[a.ResponseURL] = name
	d.pending[a.ResponseURL] = true
	d.out.user(name, "#platform", "clicks ["+btn.Text+"]")
	_, err = d.post(ctx, slackInteractionsPath, []byte(slacktest.BlockActionsPayload(a).Encode()), name)
	return err
}

// post sends a signed request the way Slack does, prints any immediate
// answer, which only the sender sees, and returns its text.
func (d *demo) post(ctx context.Context, path string, body []byte, who string) (string, error) {
	req := slacktest.SignedRequest(d.slackURL+path, d.secret, body, time.Now())
	resp, err := d.http.Do(req.WithContext(ctx))
	if err != nil {
		return "", fmt.Errorf("POST %s: %w", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", fmt.Errorf("POST %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("POST %s: %s: %s", path, resp.Status, strings.TrimSpace(string(b)))
	}
	var text string
	if len(b) > 0 {
		var msg map[string]any
		if json.Unmarshal(b, &msg) == nil {
			text = d.out.messageText(msg)
		} else {
			text = strings.TrimSpace(string(b))
		}
		if text != "" {
			d.out.private(who, text)
		}
	}
	return text, nil
}

// handle prints one Slack call and clicks Approve when a gate opens.
func (d *demo) handle(ctx context.Context, c slacktest.Call) error {
	if c.Error != "" {
		d.out.note("  (Slack answered %s with %s)", c.Method, c.Error)
		return nil
	}
	switch c.Method {
	case "chat.postMessage":
		ts, _ := c.Result["ts"].(string)
		channel := c.Param("channel")
		if thread := c.Param("thread_ts"); thread != "" {
			d.out.thread(d.out.render(c.Param("text"), c.Param("blocks")))
			return nil
		}
		if d.rootTS == "" && channel == demoChannel {
			d.rootTS = ts
		}
		d.out.bot(d.out.channelName(channel), d.out.render(c.Param("text"), c.Param("blocks")), ts)
	case "chat.update":
		d.out.update(d.out.render(c.Param("text"), c.Param("blocks")), c.Param("ts"))
	case "chat.postEphemeral":
		d.out.private(d.out.name(c.Param("user")), joinLines(d.out.render(c.Param("text"), c.Param("blocks"))))
	case slacktest.MethodResponseURL:
		if text := d.out.messageText(c.JSON); text != "" {
			d.out.private(d.replyTo[c.URL], text)
			delete(d.pending, c.URL)
		}
	case "views.open":
		d.out.note("  (the bot opened a form)")
	}
	return nil
}

// approveIfAsked has bob click Approve once on each gate shown on the run's
// message, as read from the Slack fake: the current message, like a person sees.
func (d *demo) approveIfAsked(ctx context.Context) error {
	if d.rootTS == "" {
		return nil
	}
	msg, ok := d.sl.Message(demoChannel, d.rootTS)
	if !ok {
		return nil
	}
	btn, ok := msg.Button(bot.ActionApprove)
	if !ok || d.clicked[btn.Value] {
		return nil
	}
	if !d.selfTry {
		// alice tries to approve her own request first: refused privately.
		// bob clicks once she has her answer: clicks are decided in the
		// background, and bob's, decided first, would leave hers "already
		// approved" instead.
		d.selfTry = true
		return d.click(ctx, d.rootTS, btn, demoRequester, "alice")
	}
	if len(d.pending) > 0 {
		return nil
	}
	d.clicked[btn.Value] = true
	return d.click(ctx, d.rootTS, btn, demoApprover, "bob")
}

// finished reports whether the run ended and Slack shows it.
func (d *demo) finished(ctx context.Context) (bool, error) {
	if d.runID == 0 {
		runs, err := d.a.engine.List(ctx, workflow.ListOptions{Limit: 1})
		if err != nil || len(runs) == 0 {
			return false, err
		}
		d.runID = runs[0].ID
	}
	r, err := d.a.engine.Get(ctx, d.runID)
	if err != nil {
		return false, err
	}
	// Every click has had its private answer too.
	if !r.State.Terminal() || d.rootTS == "" || len(d.pending) > 0 {
		return false, nil
	}
	msg, ok := d.sl.Message(demoChannel, d.rootTS)
	return ok && strings.Contains(msg.PlainText(), bot.StateLabel(r.State)), nil
}

// report prints the run as the admin API served it and the objects the
// fakes now hold. It fails unless the run succeeded.
func (d *demo) report(v runView, calls string) error {
	o := d.out
	o.blank()
	o.title(fmt.Sprintf("Run #%d: %s", v.ID, v.State))
	for _, s := range v.Steps {
		line := fmt.Sprintf("  %-24s %-10s", s.Name, s.Status)
		if s.Kind == workflow.KindGate {
			var who []string
			for _, a := range v.Approvals {
				if a.Gate == s.Name {
					who = append(who, o.name(a.User)+" "+pastTenseOf(a.Decision))
				}
			}
			line += " " + strings.Join(who, ", ")
		} else {
			line += fmt.Sprintf(" %d attempt(s)", s.Attempts)
		}
		if s.Error != "" {
			line += "; last error: " + s.Error
		}
		o.line(line)
	}

	o.blank()
	o.title("Created in authentik")
	for _, p := range d.ak.Providers() {
		o.line(fmt.Sprintf("  OAuth2/OpenID provider #%d %q", p.PK, p.Name))
		o.line("    client ID       " + p.ClientID + " (confidential; the secret stays in authentik)")
		for _, u := range p.RedirectURIs {
			o.line("    redirect URI    " + u.URL + " (" + u.MatchingMode + ")")
		}
		key := p.SigningKey
		if key == d.ak.CertificatePK(workflow.DefaultSigningKey) {
			key = workflow.DefaultSigningKey + " (" + key + ")"
		}
		o.line("    signing key     " + key)
	}
	for _, a := range d.ak.Applications() {
		o.line(fmt.Sprintf("  application %q, slug %s, provider #%d, policy engine mode %s", a.Name, a.Slug, a.Provider, a.PolicyEngineMode))
	}
	o.blank()
	o.title("Created in Cloudflare Zero Trust Access")
	for _, p := range d.cf.IdentityProviders() {
		o.line(fmt.Sprintf("  login method %q (%s), id %s", p.Name, p.Type, p.ID))
		o.line("    client ID       " + p.Config.ClientID)
		o.line("    auth URL        " + p.Config.AuthURL)
		o.line("    token URL       " + p.Config.TokenURL)
		o.line("    certificate URL " + p.Config.CertsURL)
		o.line("    scopes          " + strings.Join(p.Config.Scopes, " ") + ", PKCE " + strconv.FormatBool(p.Config.PKCEEnabled))
	}
	if v.DashboardURL != "" {
		o.line("  test it at " + v.DashboardURL)
	}

	o.blank()
	if calls != "" {
		o.note("API calls made: %s.", calls)
	}
	if v.State != workflow.StateSucceeded {
		return fmt.Errorf("run #%d ended %s: %s", v.ID, v.State, first(v.Error, lastStepError(v)))
	}
	return nil
}

func lastStepError(v runView) string {
	for i := len(v.Steps) - 1; i >= 0; i-- {
		if v.Steps[i].Error != "" {
			return v.Steps[i].Error
		}
	}
	return "no error recorded"
}

// apiCalls sums ssobot_api_requests_total by system from a scrape.
func apiCalls(metrics []byte) string {
	counts := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(string(metrics)))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "ssobot_api_requests_total{") {
			continue
		}
		i := strings.Index(line, `system="`)
		j := strings.LastIndexByte(line, ' ')
		if i < 0 || j < 0 {
			continue
		}
		sys := line[i+len(`system="`):]
		sys = sys[:strings.IndexByte(sys, '"')]
		if n, err := strconv.ParseFloat(line[j+1:], 64); err == nil {
			counts[sys] += n
		}
	}
	var parts []string
	for _, s := range []string{systemSlack, systemAuthentik, systemCloudflare} {
		if counts[s] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", s, int(counts[s])))
		}
	}
	return strings.Join(parts, ", ")
}

func pastTenseOf(d workflow.Decision) string {
	if d == workflow.Reject {
		return "rejected"
	}
	return "approved"
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

// fakesConfig is the configuration of a bot talking to the in-process fakes
// (the demo's and the bench's), one approval per gate.
func fakesConfig(ak *authentiktest.Server, cf *cloudflaretest.Server, sl *slacktest.Server, signingSecret, dbPath string, approvers ...string) Config {
	return Config{
		SlackBotToken:       workflow.NewSecret(sl.BotToken()),
		SlackSigningSecret:  workflow.NewSecret(signingSecret),
		SlackAPIURL:         sl.APIURL(),
		AuthentikURL:        ak.URL(),
		AuthentikToken:      workflow.NewSecret(ak.Token()),
		CloudflareAPIToken:  workflow.NewSecret(cf.Token()),
		CloudflareAccountID: demoAccountID,
		CloudflareBaseURL:   cf.URL(),
		ApproverUsers:       approvers,
		ApprovalsRequired:   1,
		ApprovalTTL:         defaultApprovalTTL,
		DBPath:              dbPath,
	}
}

// fakeRoots trusts the authentik fake's generated certificate, and only it.
func fakeRoots(ak *authentiktest.Server) (*x509.CertPool, error) {
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(ak.CertPEM()) {
		return nil, errors.New("the authentik fake's certificate does not parse")
	}
	return roots, nil
}
