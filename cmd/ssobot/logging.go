package main

import (
	"io"
	"log/slog"
)

// newLogger returns a logger writing one line per event, as JSON or as
// logfmt-like text. A duration is written as Go writes it ("1.5s") in both:
// the JSON handler would write nanoseconds, a unit nobody reads at a glance,
// and a line would read differently from its text twin.
func newLogger(w io.Writer, format string, level slog.Level) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: durationString}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

func durationString(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}
