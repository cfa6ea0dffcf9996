package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// TestHealth: `ssobot health` exits 0 when the bot's admin API says ready,
// 1 with the reason when it does not or nobody answers, and finds the API
// from SSOBOT_ADMIN_LISTEN as `runs` does.
func TestHealth(t *testing.T) {
	var notReady atomic.Value
	notReady.Store("")
	admin := httptest.NewServer(newAdminHandler(adminConfig{Ready: func() error {
		if why := notReady.Load().(string); why != "" {
			return errors.New(why)
		}
		return nil
	}}))
	defer admin.Close()
	// As if --admin named the bot by a name it was not told to answer to.
	named := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Host = "admin.example.com:9090"
		admin.Config.Handler.ServeHTTP(w, r)
	}))
	defer named.Close()
	dead := deadAddr(t)

	tests := []struct {
		name     string
		listen   string // SSOBOT_ADMIN_LISTEN
		args     []string
		notReady string
		code     int
		out      string
	}{
		{"ready, found from the environment", strings.TrimPrefix(admin.URL, "http://"), nil, "", exitOK, "ready"},
		{"ready, --admin", "", []string{"--admin", admin.URL + "/"}, "", exitOK, "ready"},
		// As SSOBOT_ADMIN_LISTEN and `ssobot runs --admin` take it.
		{"ready, --admin host:port", "", []string{"--admin", strings.TrimPrefix(admin.URL, "http://")}, "", exitOK, "ready"},
		{"not ready", strings.TrimPrefix(admin.URL, "http://"), nil, "database closed", exitFailure, "not ready (503 Service Unavailable)"},
		{"no answer", dead, nil, "", exitFailure, `no answer from "http://` + dead + `"`},
		{"a host name the bot does not answer to", "", []string{"--admin", named.URL}, "", exitFailure,
			`"` + named.URL + `" answered 421 Misdirected Request: host "admin.example.com" is not allowed for the admin API: use its IP address or localhost, or add the name to SSOBOT_ADMIN_HOSTS`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			notReady.Store(tt.notReady)
			env := map[string]string{"SSOBOT_ADMIN_LISTEN": tt.listen}
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), append([]string{"health"}, tt.args...), func(k string) string { return env[k] }, nil, &stdout, &stderr)
			if got := stdout.String() + stderr.String(); code != tt.code || !strings.Contains(got, tt.out) {
				t.Errorf("exit %d, output %q; want %d and %q", code, got, tt.code, tt.out)
			}
			if tt.notReady != "" && !strings.Contains(stderr.String(), tt.notReady) {
				t.Errorf("output %q does not say why: %q", stderr.String(), tt.notReady)
			}
		})
	}
}

// TestHealthAdminRefused: --admin with user info, a query or a fragment is
// refused as a usage error that does not show them, as by `runs`.
func TestHealthAdminRefused(t *testing.T) {
	for _, tt := range adminRefusals(deadAddr(t)) {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), []string{"health", "--admin", tt.value}, func(string) string { return "" }, nil, &stdout, &stderr)
			out := stdout.String() + stderr.String()
			if code != exitUsage || !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("exit %d, output %q; want %d and %q", code, out, exitUsage, tt.want)
			}
			if strings.Contains(out, tt.secret) {
				t.Errorf("output %q shows %q", out, tt.secret)
			}
		})
	}
}
