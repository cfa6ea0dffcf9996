package store

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ssobot/ssobot/workflow"
)

// codecRuns are runs with what the encodings could differ on: characters
// encoding/json escapes (HTML, U+2028, control characters, invalid UTF-8),
// zero and non-zero times in several zones and precisions, nil and empty
// slices and maps, and the extremes of the numbers.
func codecRuns() map[string]*workflow.Run {
	at := time.Date(2026, 11, 30, 3, 4, 5, 123456789, time.UTC)
	full := newRun("Grafana <Prod> & \"Ops\"", workflow.StateAwaitingApproval)
	full.ID, full.Version = 1<<62, 1<<63
	full.Request.TeamDomain = "acme.cloudflareaccess.com"
	full.Params.ScopeMappingIDs = []string{"a", "b\u2028c", "\x00\x1f\x7f"}
	full.Params.AuthentikURL = "https://auth.example.com/?a=1&b=<2>"
	full.Steps[0].Errors = []workflow.AttemptError{{Attempt: 1, At: at.In(time.FixedZone("", -7*3600)), Error: "503 \u2029 ☃ \xff\xfe", Transient: true}}
	full.Steps[1].Deadline = at.Add(time.Hour).In(time.FixedZone("X", 5*3600+1800))
	full.Steps[1].RemindAt = at.Truncate(time.Second)
	full.Steps[1].Nonce = "n0nce"
	full.Steps[2].NextAttemptAt = time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC)
	full.Approvals = []workflow.Approval{{Gate: workflow.GateAuthentik, User: "U1", Decision: workflow.Approve, At: at, Lapsed: true, SetAside: true, Reason: "ok"}}
	full.Resources = workflow.Resources{AuthentikProviderID: -1, AuthentikApplicationSlug: "grafana", CloudflareIdentityProviderID: "idp"}
	full.Problems = []string{"", "line\nbreak\ttab"}
	full.Error, full.DashboardURL, full.MessageRef, full.Delivered = "boom", "https://x/<y>", "C1|1.2", 7

	empty := &workflow.Run{Steps: []workflow.Step{}, Approvals: []workflow.Approval{}, Problems: []string{}}
	return map[string]*workflow.Run{
		"fresh":   newRun("Grafana", workflow.StatePending),
		"full":    full,
		"zero":    {},
		"empties": empty,
	}
}

func codecEvents() map[string]*workflow.Event {
	at := time.Date(2026, 11, 30, 3, 4, 5, 6, time.FixedZone("CET", 3600))
	return map[string]*workflow.Event{
		"plain":   {RunID: 1, Seq: 1, At: at, Type: workflow.EventCreated, Actor: "U1", Message: "U1 asked to set up \"Grafana\" <&>"},
		"data":    {RunID: -5, Seq: 1 << 63, At: at, Type: workflow.EventNote, Step: workflow.StepVerify, Message: "\u2028", Data: map[string]string{"z": "1", "a": "<2>", "": "\xff"}},
		"nildata": {Data: map[string]string{}},
		"zero":    {},
	}
}

// TestCodecMatchesEncodingJSON: the store writes exactly the bytes
// encoding/json writes, and reads what encoding/json wrote (and anything
// else) into the same values. The one difference: both replace the bytes of
// invalid UTF-8 with U+FFFD, which encoding/json writes escaped (\ufffd).
func TestCodecMatchesEncodingJSON(t *testing.T) {
	values := map[string]any{}
	for name, r := range codecRuns() {
		values["run "+name] = r
	}
	for name, e := range codecEvents() {
		values["event "+name] = e
	}
	for name, v := range values {
		t.Run(name, func(t *testing.T) {
			v1, err := json.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			want := bytes.ReplaceAll(v1, []byte(`\ufffd`), []byte("\ufffd"))
			got, err := marshal(v)
			if err != nil {
				t.Fatalf("marshal: %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("marshal:\n got %s\nwant %s", got, want)
			}
			var buf bytes.Buffer
			buf.WriteString("kept")
			if err := encodeTo(&buf, v); err != nil {
				t.Fatalf("encodeTo: %v", err)
			}
			if got := buf.Bytes(); !bytes.Equal(got, append([]byte("kept"), want...)) {
				t.Errorf("encodeTo:\n got %s\nwant kept%s", got, want)
			}
			checkSameDecoding(t, v1, reflect.TypeOf(v).Elem())
			checkSameDecoding(t, got, reflect.TypeOf(v).Elem())
		})
	}
}

// TestCodecDecodesLikeEncodingJSON covers input encoding/json's Marshal
// never writes but a damaged or hand-edited file may hold.
func TestCodecDecodesLikeEncodingJSON(t *testing.T) {
	for name, in := range codecOddInputs() {
		t.Run(name, func(t *testing.T) {
			checkSameDecoding(t, []byte(in), reflect.TypeFor[workflow.Run]())
			checkSameDecoding(t, []byte(in), reflect.TypeFor[workflow.Event]())
		})
	}
}

func codecOddInputs() map[string]string {
	return map[string]string{
		"case-insensitive names": `{"ID":3,"STATE":"failed","Steps":[{"NAME":"verify"}]}`,
		"unknown fields":         `{"id":1,"what":{"x":[1,2]},"run_id":2}`,
		"duplicate names":        `{"id":1,"id":2,"state":"a","state":"b"}`,
		"nulls":                  `{"id":null,"steps":null,"request":null,"created_at":null,"data":null}`,
		"invalid UTF-8":          "{\"error\":\"\xff\xfe\",\"message\":\"\xc3\"}",
		"escapes":                `{"error":"\u003c\ud83d\ude00\ud800\"","message":"\/"}`,
		"wrong type":             `{"id":"1"}`,
		"wrong type inside":      `{"steps":[{"attempts":"x"}],"seq":-1}`,
		"float for int":          `{"id":1.5,"version":1e3}`,
		"overflow":               `{"id":9223372036854775808}`,
		"bad time":               `{"created_at":"yesterday","at":"2026-13-01T00:00:00Z"}`,
		"time with offset":       `{"created_at":"2026-11-30T03:04:05.1+05:30","at":"2026-11-30T03:04:05-00:00"}`,
		"truncated":              `{"id":1,"steps":[{"name":"ver`,
		"trailing data":          `{"id":1} {"id":2}`,
		"trailing garbage":       `{"id":1}x`,
		"not an object":          `[1,2]`,
		"empty":                  ``,
		"whitespace":             " \n\t{ \"id\" : 4 }\r\n",
	}
}

// checkSameDecoding decodes in with encoding/json and with the store's
// codec into fresh values of type typ: both must fail, or both succeed
// with the same value.
func checkSameDecoding(t *testing.T, in []byte, typ reflect.Type) {
	t.Helper()
	want, got := reflect.New(typ).Interface(), reflect.New(typ).Interface()
	wantErr, gotErr := json.Unmarshal(in, want), unmarshal(in, got)
	if (wantErr == nil) != (gotErr == nil) {
		t.Fatalf("decoding %q into %v: encoding/json: %v, codec: %v", in, typ, wantErr, gotErr)
	}
	if wantErr == nil && !reflect.DeepEqual(got, want) {
		t.Errorf("decoding %q into %v:\n got %+v\nwant %+v", in, typ, got, want)
	}
}

// FuzzCodecDecoding: any input decodes as with encoding/json, or fails
// with both. The seeds run with go test; `go test -fuzz FuzzCodecDecoding
// ./store` searches further.
func FuzzCodecDecoding(f *testing.F) {
	for _, r := range codecRuns() {
		v, _ := json.Marshal(r)
		f.Add(v)
	}
	for _, e := range codecEvents() {
		v, _ := json.Marshal(e)
		f.Add(v)
	}
	for _, in := range codecOddInputs() {
		f.Add([]byte(in))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		checkSameDecoding(t, in, reflect.TypeFor[workflow.Run]())
		checkSameDecoding(t, in, reflect.TypeFor[workflow.Event]())
	})
}

// BenchmarkCodec compares the store's codec with encoding/json on a run as
// `/sso-setup new` creates it.
func BenchmarkCodec(b *testing.B) {
	r := newRun("Grafana", workflow.StatePending)
	stored, err := marshal(r)
	if err != nil {
		b.Fatal(err)
	}
	var buf bytes.Buffer
	for _, bc := range []struct {
		name string
		fn   func() error
	}{
		{"encode/codec", func() error { buf.Reset(); return encodeTo(&buf, r) }},
		{"encode/encoding_json", func() error { buf.Reset(); return json.NewEncoder(&buf).Encode(r) }},
		{"decode/codec", func() error { var out workflow.Run; return unmarshal(stored, &out) }},
		{"decode/encoding_json", func() error { var out workflow.Run; return json.Unmarshal(stored, &out) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := bc.fn(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	if strings.Contains(string(stored), "\n") {
		b.Fatal("an encoding holds a newline")
	}
}
