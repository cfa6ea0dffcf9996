package workflow

import (
	"errors"
	"fmt"
	"testing"
)

// TestOpErr: a step names its operation once, whether the adapter's error
// already does or not, and the error stays matchable.
func TestOpErr(t *testing.T) {
	api := &APIError{System: "authentik", Op: "create application (needs add_application)", Status: 403, Message: "denied"}
	plain := errors.New("connection reset")
	tests := []struct {
		err  error
		want string
	}{
		{api, "authentik: create application (needs add_application): 403 Forbidden: denied"},
		{fmt.Errorf("retrying: %w", api), "retrying: authentik: create application (needs add_application): 403 Forbidden: denied"},
		{&APIError{System: "cloudflare", Op: "list login methods", Status: 500}, "create application: cloudflare: list login methods: 500 Internal Server Error"},
		{plain, "create application: connection reset"},
	}
	for _, tt := range tests {
		got := opErr("create application", tt.err)
		if got.Error() != tt.want || !errors.Is(got, tt.err) {
			t.Errorf("opErr(%q) = %q; want %q, wrapping the error", tt.err, got, tt.want)
		}
	}
}
