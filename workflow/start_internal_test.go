package workflow

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// TestDefaultLoginMethodNameFits: the default name is cut to fit whatever
// the prefix, and a prefix that leaves no room for the application is
// kept whole (validation then refuses the name) instead of panicking.
func TestDefaultLoginMethodNameFits(t *testing.T) {
	long := strings.Repeat("é", MaxNameLength)
	tests := []struct {
		name, prefix, app string
		want              string // "" when only the length and validity are checked
		valid             bool
	}{
		{"short", "authentik", "Grafana", "authentik (Grafana)", true},
		{"long application", "authentik", long, "", true},
		{"room for one character", strings.Repeat("p", MaxNameLength-4), "Grafana", strings.Repeat("p", MaxNameLength-4) + " (…)", true},
		{"one-character application exactly fits", strings.Repeat("p", MaxNameLength-4), "G", strings.Repeat("p", MaxNameLength-4) + " (G)", true},
		{"no room", strings.Repeat("p", MaxNameLength-3), "Grafana", strings.Repeat("p", MaxNameLength-3) + " (Grafana)", false},
		{"prefix at the limit", strings.Repeat("p", MaxNameLength), "Grafana", strings.Repeat("p", MaxNameLength) + " (Grafana)", false},
		{"prefix beyond the limit", strings.Repeat("p", 2*MaxNameLength), "Grafana", strings.Repeat("p", 2*MaxNameLength) + " (Grafana)", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := defaultLoginMethodName(tt.prefix, tt.app)
			if tt.want != "" && got != tt.want {
				t.Errorf("defaultLoginMethodName = %q, want %q", got, tt.want)
			}
			if err := ValidateName("login method name", got); (err == nil) != tt.valid {
				t.Errorf("ValidateName(%q) = %v, want valid %v", got, err, tt.valid)
			}
			if tt.valid && utf8.RuneCountInString(got) > MaxNameLength {
				t.Errorf("%q is %d characters, over %d", got, utf8.RuneCountInString(got), MaxNameLength)
			}
		})
	}
}
