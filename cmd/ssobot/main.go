// Command ssobot is a Slack bot that sets up single sign-on through
// authentik for Cloudflare Zero Trust Access: /sso-setup new <App> creates an
// authentik OAuth2/OpenID provider and application and the matching OpenID
// Connect login method in Cloudflare Access, after approvals clicked in Slack.
//
// Subcommands: serve, demo, manifest, runs, bench, version. See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // a runtime failure: a credential refused, the database locked, a listener failed
	exitUsage   = 2 // missing or malformed configuration or arguments
)

func main() {
	// The bench's load generator is this executable again (benchChild).
	if code, ok := benchChild(); ok {
		os.Exit(code)
	}
	// SIGINT and SIGTERM end ctx: serve shuts down gracefully. A second one
	// is not caught, and stops the process at once (should the graceful
	// shutdown hang).
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop()
	}()
	code := run(ctx, os.Args[1:], os.Getenv, os.ReadFile, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `ssobot sets up authentik single sign-on for Cloudflare Zero Trust Access from Slack.

Usage:
  ssobot serve                       run the bot (configured by environment variables; -h lists them)
  ssobot demo                        run a complete setup against built-in fakes, no configuration needed
  ssobot manifest [--url URL]        print the Slack app manifest (Socket Mode without --url)
  ssobot runs list [--json]          list runs, from a running bot's admin API or the database file
  ssobot runs show <id> [--json]     show one run with its steps, decisions and audit log
  ssobot health [--admin URL]        exit 0 if a running bot is ready (for a container's health check)
  ssobot bench [--quick] [--json]    measure latency, cost, memory and size against built-in fakes
  ssobot version                     print the version
`

// run executes one subcommand and returns the process exit code. Every
// outside dependency is a parameter so tests run it in-process.
func run(ctx context.Context, args []string, getenv func(string) string, readFile func(string) ([]byte, error), stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch cmd, rest := args[0], args[1:]; cmd {
	case "serve":
		return serveCmd(ctx, rest, getenv, readFile, stdout, stderr)
	case "demo":
		return demoCmd(ctx, rest, getenv, stdout, stderr)
	case "manifest":
		return manifestCmd(rest, stdout, stderr)
	case "runs":
		return runsCmd(ctx, rest, getenv, stdout, stderr)
	case "health":
		return healthCmd(ctx, rest, getenv, stdout, stderr)
	case "bench":
		return benchCmd(ctx, rest, stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, Version())
		return exitOK
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "ssobot: unknown command %q\n\n%s", cmd, usage)
		return exitUsage
	}
}

// parseFlags parses a subcommand's flags, which take no other arguments. When
// it returns false the command ends with that exit code: 0 for -h, else a
// usage error (the flag package has already said what was wrong).
// helpTo sends the usage to stdout when it was asked for (-h, -help,
// --help), so that `ssobot serve -h | less` works; usage errors stay on
// stderr.
func helpTo(fs *flag.FlagSet, args []string, stdout io.Writer) {
	for _, a := range args {
		switch a {
		case "--":
			return
		case "-h", "-help", "--h", "--help":
			fs.SetOutput(stdout)
			return
		}
	}
}

func parseFlags(fs *flag.FlagSet, args []string) (int, bool) {
	return parseFlagsHint(fs, args, nil)
}

// parseFlagsHint is parseFlags with hint, when set, saying what the stray
// arguments were likely meant as (the line naming them ends with it).
func parseFlagsHint(fs *flag.FlagSet, args []string, hint func(stray []string) string) (int, bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, false
		}
		return exitUsage, false
	}
	if fs.NArg() > 0 {
		msg := unexpected(fs.Args())
		if hint != nil {
			msg += ": " + hint(fs.Args())
		}
		usageError(fs, msg)
		return exitUsage, false
	}
	return 0, true
}

// unexpected names arguments a command does not take.
func unexpected(args []string) string {
	if len(args) == 1 {
		return fmt.Sprintf("unexpected argument %q", args[0])
	}
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = strconv.Quote(a)
	}
	return "unexpected arguments " + strings.Join(quoted, " ")
}

// usageError says what was wrong with a command line, then shows the
// command's usage: the usage alone leaves a person to guess which part it
// refused.
func usageError(fs *flag.FlagSet, msg string) {
	fmt.Fprintf(fs.Output(), "%s: %s\n\n", fs.Name(), msg)
	fs.Usage()
}
