package main

import (
	"io"
	"log/slog"
)

// newLogger returns a logger writing one line per event, as JSON or as
// logfmt-like text.
func newLogger(w io.Writer, format string, level slog.Level) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}
