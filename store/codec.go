package store

import (
	"io"

	json "github.com/go-json-experiment/json"
	jsonv1 "github.com/go-json-experiment/json/v1"
)

// The store's values are JSON as encoding/json writes it. They are encoded
// and decoded with encoding/json/v2's implementation (the module the Go team
// publishes it from) set to encoding/json's semantics: the bytes are the
// same (TestCodecMatchesEncodingJSON), so files written before and after
// read alike, and tools that read them with encoding/json keep working. It
// is the cheaper implementation: a new run's encoding took 10.7 µs and 51
// allocations with encoding/json, 7.0 µs and 35 here, and a decoding 22 µs
// and 40 allocations against 12 µs and 7 (BenchmarkCodec). Every write of a
// run encodes it, and `/sso-setup new` answers only once its run is encoded
// and committed.
var codec = jsonv1.DefaultOptionsV1()

// marshal encodes v as encoding/json's Marshal does.
func marshal(v any) ([]byte, error) { return json.Marshal(v, codec) }

// encodeTo writes v's encoding to w, without encoding/json's Encoder's
// trailing newline.
func encodeTo(w io.Writer, v any) error { return json.MarshalWrite(w, v, codec) }

// unmarshal decodes data into v as encoding/json's Unmarshal does; v shares
// no memory with data.
func unmarshal(data []byte, v any) error { return json.Unmarshal(data, v, codec) }
