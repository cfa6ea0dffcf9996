package main

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestLogDurations: a duration reads the same in both formats, as Go
// writes it ("1.5s"), never as a count of nanoseconds, wherever it was
// added (on the line, by With, in a group).
func TestLogDurations(t *testing.T) {
	tests := []struct {
		format string
		want   []string
	}{
		{"json", []string{`"wait":"1.5s"`, `"duration":"8.959962ms"`, `"g":{"ttl":"24h0m0s"}`, `"n":3`}},
		{"text", []string{`wait=1.5s`, `duration=8.959962ms`, `g.ttl=24h0m0s`, `n=3`}},
	}
	for _, tt := range tests {
		t.Run(tt.format, func(t *testing.T) {
			var b bytes.Buffer
			log := newLogger(&b, tt.format, slog.LevelInfo).With(slog.Duration("wait", 1500*time.Millisecond))
			log.Info("x", "duration", 8959962*time.Nanosecond, slog.Group("g", slog.Duration("ttl", 24*time.Hour)), slog.Int("n", 3))
			for _, w := range tt.want {
				if !strings.Contains(b.String(), w) {
					t.Errorf("line %s lacks %s", b.String(), w)
				}
			}
		})
	}
}
