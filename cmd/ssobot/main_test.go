package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestArgumentErrors: a command given arguments it does not take, or
// missing one, says what was wrong on its first line, then shows its usage,
// and exits 2.
func TestArgumentErrors(t *testing.T) {
	tests := []struct {
		args  []string
		first string // the first line of stderr
		usage string
	}{
		{[]string{"serve", "extra"}, `ssobot serve: unexpected argument "extra"`, "usage: ssobot serve"},
		{[]string{"serve", "a", "b c"}, `ssobot serve: unexpected arguments "a" "b c"`, "usage: ssobot serve"},
		{[]string{"manifest", "extra"}, `ssobot manifest: unexpected argument "extra"`, "usage: ssobot manifest"},
		{[]string{"health", "extra"}, `ssobot health: unexpected argument "extra"`, "usage: ssobot health"},
		{[]string{"runs"}, `ssobot runs: missing subcommand: list or show <id>`, "usage: ssobot runs list"},
		{[]string{"runs", "bogus"}, `ssobot runs: unknown subcommand "bogus": want list or show <id>`, "usage: ssobot runs list"},
		{[]string{"runs", "list", "extra"}, `ssobot runs list: unexpected argument "extra"`, "usage: ssobot runs list"},
		{[]string{"runs", "show"}, `ssobot runs show: missing run ID`, "usage: ssobot runs list"},
		{[]string{"runs", "show", "1", "2"}, `ssobot runs show: unexpected argument "2"`, "usage: ssobot runs list"},
		{[]string{"health", "--admin", "ftp://127.0.0.1:9090"}, `ssobot health: --admin "ftp://127.0.0.1:9090" is neither an http(s) URL nor a host:port`, ""},
		{[]string{"runs", "list", "--admin", "127.0.0.1"}, `ssobot runs: --admin "127.0.0.1" is neither an http(s) URL nor a host:port`, ""},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tt.args, func(string) string { return "" }, nil, &stdout, &stderr)
			if code != exitUsage {
				t.Errorf("exit %d, want %d", code, exitUsage)
			}
			first, rest, _ := strings.Cut(stderr.String(), "\n")
			if first != tt.first || !strings.Contains(rest, tt.usage) {
				t.Errorf("stderr:\n%s\nwant first %q, then the usage (%q)", stderr.String(), tt.first, tt.usage)
			}
		})
	}
}
