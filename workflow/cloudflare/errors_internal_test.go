package cloudflare

import (
	"net/http"
	"testing"
	"time"

	"github.com/ssobot/ssobot/workflow"
)

// TestRetryAfter: integer seconds or an HTTP date; anything else (NaN,
// infinities, exponents, fractions, signs, numbers beyond 64 bits) counts
// as absent, and no wait is honoured past workflow.MaxRetryAfter.
func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		h    string
		want time.Duration
	}{
		{"", 0},
		{"7", 7 * time.Second},
		{" 30 ", 30 * time.Second},
		{"0", 0},
		{"-1", 0},
		{"-0", 0},
		{"NaN", 0},
		{"nan", 0},
		{"+Inf", 0},
		{"-Inf", 0},
		{"Infinity", 0},
		{"1e10", 0},
		{"1.5", 0},
		{"+5", 0},
		{"1_000", 0},
		{"99999999999999999999", 0},
		{"18446744073709551616", 0},
		{"18446744073709551615", workflow.MaxRetryAfter},
		{"9223372037", workflow.MaxRetryAfter},
		{"31536000", workflow.MaxRetryAfter},
		{"300", workflow.MaxRetryAfter},
		{"299", 299 * time.Second},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0},
		{now.Add(365 * 24 * time.Hour).Format(http.TimeFormat), workflow.MaxRetryAfter},
		{"Fri, 31 Dec 9999 23:59:59 GMT", workflow.MaxRetryAfter},
		{"Mon, 01 Jan 0001 00:00:00 GMT", 0},
		{"tomorrow", 0},
	}
	for _, tt := range tests {
		if got := retryAfter(tt.h, now); got != tt.want {
			t.Errorf("retryAfter(%q) = %v, want %v", tt.h, got, tt.want)
		}
	}
}
