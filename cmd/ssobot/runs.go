package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/ssobot/ssobot/store"
	"github.com/ssobot/ssobot/workflow"
)

// errNoAdmin: no bot answers on the admin address, so the database file
// is read instead.
var errNoAdmin = errors.New("no bot answers on the admin address")

// runsCmd implements `ssobot runs list|show <id> [--json]`.
func runsCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ssobot runs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	helpTo(fs, args, stdout)
	asJSON := fs.Bool("json", false, "print JSON")
	adminURL := fs.String("admin", "", "admin API of a running bot, as a URL or host:port (default http://$SSOBOT_ADMIN_LISTEN, http://127.0.0.1:9090)")
	dbPath := fs.String("db", "", "database file to read instead of asking a bot (with --admin too: only when that bot does not answer; when no bot answers: $SSOBOT_DB, ssobot.db)")
	limit := fs.Int("limit", defaultRunsLimit, "list at most this many runs")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "usage: ssobot runs list [--limit N] [--json] [--admin URL] [--db PATH]\n       ssobot runs show <id> [--json] [--admin URL] [--db PATH]\n\n")
		fs.PrintDefaults()
	}
	pos, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		return exitUsage
	}
	// A file named on the command line is what the person wants to read,
	// even if some bot answers on the default admin address.
	explicit := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { explicit[f.Name] = true })
	fileOnly := explicit["db"] && !explicit["admin"]
	base, err := adminBase(*adminURL, getenv)
	if err != nil {
		fmt.Fprintf(stderr, "ssobot runs: %v\n", err)
		return exitUsage
	}
	if *dbPath == "" {
		*dbPath = first(getenv("SSOBOT_DB"), defaultDB)
	}
	src := runSource{admin: base, db: *dbPath, fileOnly: fileOnly, client: &http.Client{Timeout: 10 * time.Second}}

	switch {
	case len(pos) == 1 && pos[0] == "list":
		if *limit < 1 || *limit > maxRunsLimit {
			fmt.Fprintf(stderr, "ssobot runs: --limit must be from 1 to %d\n", maxRunsLimit)
			return 2
		}
		runs, err := src.list(ctx, *limit)
		if err != nil {
			fmt.Fprintf(stderr, "ssobot runs: %v\n", err)
			return 1
		}
		if *asJSON {
			return printJSON(stdout, stderr, runList{Runs: runs})
		}
		printRunTable(stdout, runs)
		return 0
	case len(pos) == 2 && pos[0] == "show":
		id, err := strconv.ParseInt(strings.TrimPrefix(pos[1], "#"), 10, 64)
		if err != nil || id < 1 {
			fmt.Fprintf(stderr, "ssobot runs: %q is not a run ID\n", pos[1])
			return 2
		}
		run, err := src.get(ctx, id)
		if err != nil {
			fmt.Fprintf(stderr, "ssobot runs: %v\n", err)
			return 1
		}
		if *asJSON {
			return printJSON(stdout, stderr, run)
		}
		printRun(stdout, run)
		return 0
	}
	fs.SetOutput(stderr) // a usage error, even with -h after the arguments
	switch {
	case len(pos) == 0:
		usageError(fs, "missing subcommand: list or show <id>")
	case pos[0] == "list":
		fs.Init("ssobot runs list", flag.ContinueOnError)
		usageError(fs, unexpected(pos[1:]))
	case pos[0] == "show" && len(pos) == 1:
		fs.Init("ssobot runs show", flag.ContinueOnError)
		usageError(fs, "missing run ID")
	case pos[0] == "show":
		fs.Init("ssobot runs show", flag.ContinueOnError)
		usageError(fs, unexpected(pos[2:]))
	default:
		usageError(fs, fmt.Sprintf("unknown subcommand %q: want list or show <id>", pos[0]))
	}
	return exitUsage
}

// parseInterspersed parses flags placed before, between or after the
// positional arguments and returns the positional ones.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// adminBase is the admin API's base URL from an --admin flag: an http(s)
// URL, or a host:port as SSOBOT_ADMIN_LISTEN takes it (what a person
// copies from the bot's configuration); empty, from SSOBOT_ADMIN_LISTEN.
// User info, a query and a fragment are refused: the admin API takes no
// credentials, and a password or token there would show in every message
// that names the URL. The value is shown only through shownURL.
func adminBase(flagValue string, getenv func(string) string) (string, error) {
	if flagValue == "" {
		return adminBaseURL(getenv("SSOBOT_ADMIN_LISTEN")), nil
	}
	v, hostPort := flagValue, !strings.Contains(flagValue, "://")
	if hostPort {
		v = "http://" + flagValue // checked as the URL it is asked at
	}
	u, err := url.Parse(v)
	shown := shownURL(flagValue)
	switch {
	case err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https"):
	case u.User != nil:
		return "", fmt.Errorf("--admin must not contain user info %s: the admin API takes no credentials", shown)
	case hasQueryOrFragment(u, v):
		return "", fmt.Errorf("--admin %s must not contain a query or fragment: give the URL up to its path", shown)
	case !hostPort:
		return strings.TrimSuffix(flagValue, "/"), nil
	case u.Port() != "" && u.Path == "":
		return adminBaseURL(flagValue), nil
	}
	return "", fmt.Errorf("--admin %s is neither an http(s) URL nor a host:port", shown)
}

// adminBaseURL turns a listen address into a URL a local client can use.
func adminBaseURL(listen string) string {
	if listen == "" {
		listen = defaultAdminListen
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "http://" + defaultAdminListen
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port)
}

type runSource struct {
	admin    string
	db       string
	fileOnly bool // read db without asking the admin API
	client   *http.Client
}

func (s runSource) list(ctx context.Context, limit int) ([]runView, error) {
	var out runList
	err := s.fetch(ctx, "/api/runs?limit="+strconv.Itoa(limit), &out)
	if errors.Is(err, errNoAdmin) {
		err = s.withStore(func(st *store.Store) error {
			runs, err := st.ListRuns(ctx, workflow.ListOptions{Limit: limit})
			for _, r := range runs {
				out.Runs = append(out.Runs, newRunView(r, nil))
			}
			return err
		})
	}
	return out.Runs, err
}

func (s runSource) get(ctx context.Context, id int64) (runView, error) {
	var out runView
	err := s.fetch(ctx, "/api/runs/"+strconv.FormatInt(id, 10), &out)
	if errors.Is(err, errNoAdmin) {
		err = s.withStore(func(st *store.Store) error {
			r, err := st.GetRun(ctx, id)
			if errors.Is(err, workflow.ErrNotFound) {
				return notFoundError(fmt.Sprintf("run %d not found", id))
			}
			if err != nil {
				return err
			}
			events, err := st.Events(ctx, id)
			if err != nil {
				return err
			}
			out = newRunView(r, events)
			return nil
		})
	}
	return out, err
}

// fetch GETs an admin API path. It returns errNoAdmin when nothing listens
// (or when the file is to be read instead).
func (s runSource) fetch(ctx context.Context, path string, v any) error {
	if s.fileOnly {
		return errNoAdmin
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.admin+path, nil)
	if err != nil {
		return fmt.Errorf("admin API %s: %w", shownURL(s.admin), err)
	}
	resp, err := s.client.Do(req)
	if errors.Is(err, syscall.ECONNREFUSED) {
		return errNoAdmin
	}
	var uerr *url.Error
	if errors.As(err, &uerr) && !uerr.Timeout() && isDialError(err) {
		return errNoAdmin
	}
	if err != nil {
		return fmt.Errorf("admin API %s: %w", shownURL(s.admin), err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("admin API %s: %w", shownURL(s.admin), err)
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		var e apiError
		if json.Unmarshal(body, &e) != nil || e.Error == "" {
			// ssobot's 404s carry a JSON error: something else listens there.
			return fmt.Errorf("%s answered %s for %s, which ssobot's admin API does not: another service listens there; point --admin at the bot's SSOBOT_ADMIN_LISTEN", shownURL(s.admin), resp.Status, path)
		}
		return notFoundError(e.Error)
	case resp.StatusCode != http.StatusOK:
		var e apiError
		_ = json.Unmarshal(body, &e)
		return fmt.Errorf("admin API %s: %s: %s", shownURL(s.admin), resp.Status, first(e.Error, strings.TrimSpace(string(body))))
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("admin API %s: decode: %w", shownURL(s.admin), err)
	}
	return nil
}

// notFoundError says what was not found, in its own words: wrapping
// workflow.ErrNotFound would add a second "not found". It is one all the same.
type notFoundError string

func (e notFoundError) Error() string        { return string(e) }
func (e notFoundError) Is(target error) bool { return target == workflow.ErrNotFound }

func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

func (s runSource) withStore(fn func(*store.Store) error) error {
	st, err := store.Open(s.db, store.Options{ReadOnly: true, Timeout: 2 * time.Second})
	switch {
	case errors.Is(err, store.ErrLocked) && s.fileOnly:
		// --db alone asks no bot: the file's holder is most likely one.
		return fmt.Errorf("another process (a running bot?) holds %s: leave out --db to ask the bot through its admin API, or give --admin", s.db)
	case errors.Is(err, store.ErrLocked):
		return fmt.Errorf("no bot answers on %s and another process holds %s: point --admin at the running bot's SSOBOT_ADMIN_LISTEN", shownURL(s.admin), s.db)
	case err != nil && s.fileOnly:
		return fmt.Errorf("reading %s: %w", s.db, err)
	case err != nil:
		return fmt.Errorf("no bot answers on %s, reading %s: %w", shownURL(s.admin), s.db, err)
	}
	defer st.Close()
	return fn(st)
}

func printJSON(stdout, stderr io.Writer, v any) int {
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		fmt.Fprintf(stderr, "ssobot runs: %v\n", err)
		return 1
	}
	return 0
}

func printRunTable(w io.Writer, runs []runView) {
	if len(runs) == 0 {
		fmt.Fprintln(w, "no runs yet")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tAPPLICATION\tSLUG\tTEAM\tREQUESTED BY\tUPDATED\tSTEP")
	for _, r := range runs {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.State, r.ApplicationName, dash(r.ApplicationSlug),
			dash(r.TeamDomain), r.RequestedBy, r.UpdatedAt.Local().Format("2006-01-02 15:04"), currentStep(r))
	}
	tw.Flush()
}

// currentStep describes where a run is: its first unfinished step.
func currentStep(r runView) string {
	for _, s := range r.Steps {
		if s.Status != workflow.StepSucceeded {
			return string(s.Name) + " (" + string(s.Status) + ")"
		}
	}
	return "-"
}

func printRun(w io.Writer, r runView) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "Run\t#%d\n", r.ID)
	fmt.Fprintf(tw, "State\t%s\n", r.State)
	fmt.Fprintf(tw, "Application\t%s (slug %s)\n", r.ApplicationName, dash(r.ApplicationSlug))
	fmt.Fprintf(tw, "Team domain\t%s\n", dash(r.TeamDomain))
	if r.LoginMethodName != "" {
		fmt.Fprintf(tw, "Login method\t%s\n", r.LoginMethodName)
	}
	if r.ClientID != "" {
		fmt.Fprintf(tw, "Client ID\t%s\n", r.ClientID)
	}
	fmt.Fprintf(tw, "Requested by\t%s\n", r.RequestedBy)
	fmt.Fprintf(tw, "Created\t%s\n", r.CreatedAt.Local().Format(time.RFC3339))
	fmt.Fprintf(tw, "Updated\t%s\n", r.UpdatedAt.Local().Format(time.RFC3339))
	if r.Error != "" {
		fmt.Fprintf(tw, "Error\t%s\n", r.Error)
	}
	for _, p := range r.Problems {
		fmt.Fprintf(tw, "Problem\t%s\n", p)
	}
	if r.DashboardURL != "" {
		fmt.Fprintf(tw, "Test it at\t%s\n", r.DashboardURL)
	}
	tw.Flush()

	fmt.Fprintln(w, "\nSteps")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  STEP\tKIND\tSTATUS\tATTEMPTS\tERROR")
	for _, s := range r.Steps {
		status := string(s.Status)
		if s.Status == workflow.StepWaiting && s.Deadline != nil {
			status += " until " + s.Deadline.Local().Format(time.RFC3339)
			if s.RemindAt != nil {
				status += ", reminder at " + s.RemindAt.Local().Format(time.RFC3339)
			}
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%s\n", s.Name, s.Kind, status, s.Attempts, s.Error)
	}
	tw.Flush()

	if len(r.Approvals) > 0 {
		fmt.Fprintln(w, "\nDecisions")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, a := range r.Approvals {
			note := a.Reason
			if a.Counts != nil && !*a.Counts {
				// As the bot's card says it, so its approver knows to approve again.
				why := "no longer counts"
				if a.NotCounted != "" {
					why += ": " + a.NotCounted
				}
				note = strings.TrimSpace(note + " (" + why + ")")
			}
			fmt.Fprintf(tw, "  %s\t%s\tby %s\t%s\t%s\n", a.Gate, a.Decision, a.User, a.At.Local().Format(time.RFC3339), note)
		}
		tw.Flush()
	}

	fmt.Fprintln(w, "\nResources")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	provider := "-"
	if p := r.Resources.AuthentikProviderID; p != nil {
		provider = strconv.Itoa(*p)
	}
	fmt.Fprintf(tw, "  authentik provider\t%s\n", provider)
	fmt.Fprintf(tw, "  authentik application\t%s\n", dashPtr(r.Resources.AuthentikApplicationSlug))
	fmt.Fprintf(tw, "  Cloudflare login method\t%s\n", dashPtr(r.Resources.CloudflareIdentityProviderID))
	tw.Flush()

	if len(r.Events) > 0 {
		fmt.Fprintln(w, "\nEvents")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, e := range r.Events {
			actor := ""
			if e.Actor != "" {
				actor = " (" + e.Actor + ")"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s%s\n", e.At.Local().Format("15:04:05"), e.Type, dash(string(e.Step)), e.Message, actor)
		}
		tw.Flush()
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func dashPtr(s *string) string {
	if s == nil {
		return "-"
	}
	return dash(*s)
}
