package bot

import (
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/slack-go/slack"
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

// TestSlashForm checks slashForm against the reading it replaces:
// url.ParseQuery, every key and value checked for UTF-8, then each field's
// first value.
func TestSlashForm(t *testing.T) {
	sent := "token=x&team_id=T1&team_domain=acme&channel_id=C1&channel_name=ops&user_id=U1" +
		"&user_name=alice&command=%2Fsso-setup&text=new+Grafana+slug%3Dgrafana&api_app_id=A1" +
		"&is_enterprise_install=false&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2F1%2F2&trigger_id=1.2.3"
	tests := []struct {
		name, body string
	}{
		{"as Slack sends it", sent},
		{"non-ASCII text", "user_id=U1&text=new+%E6%97%A5%E6%9C%AC+%F0%9F%98%80"},
		{"first of two", "text=one&text=two&user_id=U1&user_id=U2"},
		{"empty first value", "text=&text=two"},
		{"no value", "text&user_id=U1"},
		{"escaped key", "us%65r_id=U1&t%65xt=hi"},
		{"plus in a key", "user+id=U1"},
		{"unknown fields only", "a=1&b=2"},
		{"empty fields", "&&text=x&&"},
		{"empty body", ""},
		{"equals in the value", "text=a=b"},
		{"bad escape", "text=%zz"},
		{"escape cut short", "text=%7"},
		{"bad escape in a key", "%x=1&text=t"},
		{"bad escape in an unknown field", "text=t&x=%G0"},
		{"semicolon", "text=t;x=1"},
		{"semicolon after a bad escape", "text=%&a;b"},
		{"bad escape after a semicolon", "a;b&text=%"},
		{"invalid UTF-8 escaped in text", "user_id=U1&text=new+%FF"},
		{"invalid UTF-8 raw", "text=\xff"},
		{"invalid UTF-8 in an unknown field", "text=ok&x=%C3"},
		{"invalid UTF-8 in a key", "%FF=1&text=ok"},
		{"invalid UTF-8 and a bad escape", "text=%FF&x=%"},
		{"a cut sequence across fields", "text=%E6%97&x=%A5"},
		{"NUL and controls", "text=a%00b%0Ac"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkSlashForm(t, tt.body) })
	}
}

func checkSlashForm(t *testing.T, body string) {
	t.Helper()
	got, err := slashForm([]byte(body))
	form, wantErr := url.ParseQuery(body)
	if wantErr == nil && !allUTF8(form) {
		wantErr = errFormNotUTF8
	}
	if (err != nil) != (wantErr != nil) || err != nil && err.Error() != wantErr.Error() {
		t.Fatalf("slashForm(%q): error %v; want %v", body, err, wantErr)
	}
	if err != nil {
		return
	}
	want := slack.SlashCommand{
		TeamID: form.Get("team_id"), TeamDomain: form.Get("team_domain"), ChannelID: form.Get("channel_id"),
		ChannelName: form.Get("channel_name"), UserID: form.Get("user_id"), Command: form.Get("command"),
		Text: form.Get("text"), ResponseURL: form.Get("response_url"), TriggerID: form.Get("trigger_id"),
		APIAppID: form.Get("api_app_id"),
	}
	if got != want {
		t.Fatalf("slashForm(%q) =\n %+v\nwant\n %+v", body, got, want)
	}
}

func allUTF8(f url.Values) bool {
	for k, vs := range f {
		if !utf8.ValidString(k) {
			return false
		}
		for _, v := range vs {
			if !utf8.ValidString(v) {
				return false
			}
		}
	}
	return true
}

func FuzzSlashForm(f *testing.F) {
	for _, s := range []string{"user_id=U1&text=new+Grafana", "text=%FF", "text=a;b", "text=%", "t%65xt=x&text=y", "command=%2Fs&text="} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		if strings.Count(body, "&") >= 10000 { // url.ParseQuery's limit, see FuzzFormValue
			return
		}
		checkSlashForm(t, body)
	})
}

// BenchmarkSlashForm reads a `new` command's body as Slack sends it.
func BenchmarkSlashForm(b *testing.B) {
	body := []byte("token=x&team_id=T1&team_domain=acme&channel_id=C1&channel_name=ops&user_id=U1" +
		"&user_name=alice&command=%2Fsso-setup&text=new+Grafana+slug%3Dgrafana&api_app_id=A1" +
		"&is_enterprise_install=false&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1%2F123%2Fabc&trigger_id=1.2.3")
	b.Run("slashForm", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := slashForm(body); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("url.ParseQuery", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			f, err := url.ParseQuery(string(body))
			if err != nil || !allUTF8(f) {
				b.Fatal(err)
			}
			_ = f.Get("text")
		}
	})
}
