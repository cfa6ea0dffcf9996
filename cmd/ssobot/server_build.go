//go:build ssobot_server

package main

import (
	"context"
	"fmt"
	"io"
)

// The server build (go build -tags ssobot_server, what the Docker image
// ships) leaves out demo and bench, and with them the fakes and the contract
// validator: a smaller binary that maps less memory.

func demoCmd(_ context.Context, _ []string, _ func(string) string, _, stderr io.Writer) int {
	fmt.Fprintln(stderr, "ssobot demo: this is the server build (-tags ssobot_server), without the demo; run `go run ./cmd/ssobot demo` from the repository")
	return exitUsage
}

func benchCmd(_ context.Context, _ []string, _, stderr io.Writer) int {
	fmt.Fprintln(stderr, "ssobot bench: this is the server build (-tags ssobot_server), without the bench; run `go run ./cmd/ssobot bench` from the repository")
	return exitUsage
}

// benchChild: the server build is never the bench's load generator.
func benchChild() (int, bool) { return 0, false }
