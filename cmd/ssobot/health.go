package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// healthCmd implements `ssobot health`: it asks a running bot's admin API
// whether it is ready, for a container's health check (the image has no
// shell or curl). Exit 0: ready; 1: not ready or no answer.
func healthCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ssobot health", flag.ContinueOnError)
	fs.SetOutput(stderr)
	helpTo(fs, args, stdout)
	adminURL := fs.String("admin", "", "admin API of the bot, as a URL or host:port (default http://$SSOBOT_ADMIN_LISTEN, http://127.0.0.1:9090)")
	timeout := fs.Duration("timeout", 5*time.Second, "how long to wait for the answer")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "usage: ssobot health [--admin URL|HOST:PORT] [--timeout 5s]\n\nAsks the running bot's admin API whether it is ready (GET /readyz): exit 0 if it is, 1 if not.\nFor a container's HEALTHCHECK: the image has no shell or curl.\n\n")
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	base, err := adminBase(*adminURL, getenv)
	if err != nil {
		fmt.Fprintf(stderr, "ssobot health: %v\n", err)
		return exitUsage
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/readyz", nil)
	if err != nil {
		fmt.Fprintf(stderr, "ssobot health: %v\n", err)
		return exitUsage
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "ssobot health: no answer from %s: %v\n", shownURL(base), err)
		return exitFailure
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	text := strings.TrimSpace(string(body))
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusServiceUnavailable:
		fmt.Fprintf(stderr, "ssobot health: not ready (%s): %s\n", resp.Status, text)
		return exitFailure
	default:
		// Not an answer about readiness: a host name the admin API does
		// not answer to (421), or another service on the address.
		fmt.Fprintf(stderr, "ssobot health: %s answered %s: %s\n", shownURL(base), resp.Status, text)
		return exitFailure
	}
	fmt.Fprintln(stdout, "ready")
	return exitOK
}
