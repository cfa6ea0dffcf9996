package bot

import (
	"net/url"
	"strings"
	"testing"
)

// TestFormValue checks formValue against url.ParseQuery, whose reading of
// a form it replaces for interaction bodies.
func TestFormValue(t *testing.T) {
	tests := []struct {
		name, body string
	}{
		{"one field", "payload=%7B%22type%22%3A%22block_actions%22%7D"},
		{"plus is a space", "payload=a+b%2Bc"},
		{"upper and lower case hex", "payload=%7b%7B%e6%97%a5"},
		{"first of two", "payload=one&payload=two"},
		{"among others", "token=x&payload=p&team=T1"},
		{"escaped key", "pay%6Coad=p"},
		{"no value", "payload"},
		{"empty value", "payload="},
		{"empty fields", "&&payload=p&&"},
		{"absent", "token=x"},
		{"empty body", ""},
		{"equals in the value", "payload=a=b"},
		{"bad escape", "payload=%zz"},
		{"escape cut short", "payload=%7"},
		{"percent at the end", "payload=abc%"},
		{"bad escape in another field", "payload=p&x=%G0"},
		{"bad escape in a later copy", "payload=p&payload=%"},
		{"bad escape in a key", "%x=1&payload=p"},
		{"semicolon", "payload=p;x=1"},
		{"semicolon in another field", "a;b&payload=p"},
		{"raw bytes", "payload=\xff\x00"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkFormValue(t, tt.body)
		})
	}
}

func checkFormValue(t *testing.T, body string) {
	t.Helper()
	form, wantErr := url.ParseQuery(body)
	got, found, err := formValue([]byte(body), "payload")
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("formValue(%q): error %v; url.ParseQuery's %v", body, err, wantErr)
	}
	if err != nil {
		if err.Error() != wantErr.Error() {
			t.Fatalf("formValue(%q): error %q; url.ParseQuery's %q", body, err, wantErr)
		}
		return
	}
	if want := form.Get("payload"); got != want || found != form.Has("payload") {
		t.Fatalf("formValue(%q) = %q, %v; url.ParseQuery gives %q, %v", body, got, found, want, form.Has("payload"))
	}
}

func FuzzFormValue(f *testing.F) {
	for _, s := range []string{"payload=%7B%22a%22%7D", "a=b&payload=c+d", "payload=%", "x;y", "payload=%e6%97%a5&payload=2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		// url.ParseQuery refuses more than 10,000 fields (a body is
		// bounded in size before it is read; formValue keeps none).
		if strings.Count(body, "&") >= 10000 {
			return
		}
		checkFormValue(t, body)
	})
}

func BenchmarkFormValue(b *testing.B) {
	body := []byte(url.Values{"payload": {strings.Repeat(`{"type":"block_actions","user":{"id":"U1"}},`, 100)}}.Encode())
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, _, err := formValue(body, "payload"); err != nil {
			b.Fatal(err)
		}
	}
}
