package slacktest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/slack-go/slack"
)

// triggerLifetime is how long Slack accepts a trigger_id.
const triggerLifetime = 3 * time.Second

// trigger is a trigger_id's state; like response URLs (see responseURL),
// those the fake issues are kept in a table without pointers.
type trigger struct {
	issued int64 // Unix nanoseconds, on the server's clock
	used   bool
}

// NewTriggerID hands out a trigger_id for a slash command or interaction
// payload. views.open accepts it once (exchanged_trigger_id after that) and
// only within 3 seconds of issue on the server's clock (expired_trigger_id).
// trigger_ids the fake did not issue are accepted once.
func (s *Server) NewTriggerID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.newTriggerIDLocked()
}

func (s *Server) newTriggerIDLocked() string {
	s.triggers = append(s.triggers, trigger{issued: s.cfg.now().UnixNano()})
	return triggerID(len(s.triggers))
}

// triggerID is the n-th trigger_id the fake issues (from 1), shaped like
// Slack's.
func triggerID(n int) string {
	return fmt.Sprintf("%d.%d.%032x", triggerBase+n, 47445629121, n)
}

const triggerBase = 700000000000

// triggerLocked finds a trigger_id's state: from the table when the fake
// issued it, else among the foreign ones views.open has seen (nil if none).
func (s *Server) triggerLocked(id string) *trigger {
	first, _, _ := strings.Cut(id, ".")
	if n, err := strconv.Atoi(first); err == nil {
		if n -= triggerBase; n >= 1 && n <= len(s.triggers) && triggerID(n) == id {
			return &s.triggers[n-1]
		}
	}
	return s.foreign[id]
}

// View is a modal as the fake stores it.
type View struct {
	ID              string
	ExternalID      string
	TriggerID       string
	Type            string
	Title           string
	CallbackID      string
	PrivateMetadata string
	Hash            string
	// JSON is the view as the bot last sent it.
	JSON json.RawMessage
	// Updates counts views.update calls on it.
	Updates int
}

// Blocks decodes the view's blocks.
func (v View) Blocks() []slack.Block {
	var req struct {
		Blocks slack.Blocks `json:"blocks"`
	}
	if err := json.Unmarshal(v.JSON, &req); err != nil {
		return nil
	}
	return req.Blocks.BlockSet
}

type storedView struct {
	View
}

// Views returns the opened views in the order they were opened.
func (s *Server) Views() []View {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]View, 0, len(s.viewIDs))
	for _, id := range s.viewIDs {
		out = append(out, s.views[id].public())
	}
	return out
}

// View returns an opened view by ID.
func (s *Server) View(id string) (View, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.views[id]
	if !ok {
		return View{}, false
	}
	return v.public(), true
}

func (v *storedView) public() View {
	out := v.View
	out.JSON = append(json.RawMessage(nil), v.JSON...)
	return out
}

// modal is the part of a view the fake checks and remembers.
type modal struct {
	Type            string                 `json:"type"`
	Title           *slack.TextBlockObject `json:"title"`
	Submit          *slack.TextBlockObject `json:"submit"`
	Close           *slack.TextBlockObject `json:"close"`
	Blocks          json.RawMessage        `json:"blocks"`
	CallbackID      string                 `json:"callback_id"`
	PrivateMetadata string                 `json:"private_metadata"`
	ExternalID      string                 `json:"external_id"`
}

// readModal validates a view argument; Slack reports view problems as
// invalid_arguments with details.
func readModal(p params) (modal, json.RawMessage, *apiError) {
	raw, ok := p.raw("view")
	if !ok {
		return modal{}, nil, errCode("invalid_arguments", "[ERROR] missing required field: view")
	}
	var m modal
	if err := json.Unmarshal(raw, &m); err != nil {
		return modal{}, nil, errCode("invalid_arguments", "[ERROR] view is not a JSON object")
	}
	v := blockValidator{ids: map[string]bool{}}
	if m.Type != "modal" {
		v.addf("/view/type", "must be \"modal\", got %q", m.Type)
	}
	v.text("/view/title", m.Title, 24, true)
	if m.Submit != nil {
		v.text("/view/submit", m.Submit, 24, true)
	}
	if m.Close != nil {
		v.text("/view/close", m.Close, 24, true)
	}
	if utf8.RuneCountInString(m.PrivateMetadata) > 3000 {
		v.addf("/view/private_metadata", "must be less than 3001 characters")
	}
	v.id("/view/callback_id", m.CallbackID)
	if len(m.Blocks) == 0 {
		v.addf("/view/blocks", "missing required field")
	} else {
		_, problems := validateBlocks(m.Blocks, maxModalBlocks)
		v.problems = append(v.problems, problems...)
		if m.Submit == nil && hasInput(m.Blocks) {
			v.addf("/view/submit", "must provide submit when using input blocks")
		}
	}
	if len(v.problems) > 0 {
		return m, nil, errCode("invalid_arguments", v.problems...)
	}
	var buf bytes.Buffer
	_ = json.Compact(&buf, raw)
	return m, buf.Bytes(), nil
}

func hasInput(raw json.RawMessage) bool {
	var bs slack.Blocks
	if err := json.Unmarshal(raw, &bs); err != nil {
		return false
	}
	for _, b := range bs.BlockSet {
		if _, ok := b.(*slack.InputBlock); ok {
			return true
		}
	}
	return false
}

func (s *Server) viewsOpen(p params) (result, *apiError) {
	trig := p.str("trigger_id")
	if trig == "" {
		return nil, errCode("invalid_trigger_id")
	}
	t := s.triggerLocked(trig)
	switch {
	case t == nil:
	case t.used:
		return nil, errCode("exchanged_trigger_id")
	case s.cfg.now().Sub(time.Unix(0, t.issued)) > triggerLifetime:
		return nil, errCode("expired_trigger_id")
	}
	m, raw, e := readModal(p)
	if e != nil {
		return nil, e
	}
	if m.ExternalID != "" && s.viewByExternalLocked(m.ExternalID) != nil {
		return nil, errCode("duplicate_external_id")
	}
	if t == nil {
		t = &trigger{issued: s.cfg.now().UnixNano()}
		s.foreign[trig] = t
	}
	t.used = true

	s.viewSeq++
	v := &storedView{View{
		ID:        fmt.Sprintf("V%010d", s.viewSeq),
		TriggerID: trig,
	}}
	v.apply(m, raw, s.newHashLocked())
	s.views[v.ID] = v
	s.viewIDs = append(s.viewIDs, v.ID)
	return result{"view": s.viewJSON(v)}, nil
}

func (s *Server) viewsUpdate(p params) (result, *apiError) {
	var v *storedView
	switch id, ext := p.str("view_id"), p.str("external_id"); {
	case id != "":
		v = s.views[id]
	case ext != "":
		v = s.viewByExternalLocked(ext)
	default:
		return nil, errCode("invalid_arguments", "[ERROR] view_id or external_id is required")
	}
	if v == nil {
		return nil, errCode("not_found")
	}
	if h := p.str("hash"); h != "" && h != v.Hash {
		return nil, errCode("hash_conflict")
	}
	m, raw, e := readModal(p)
	if e != nil {
		return nil, e
	}
	if m.ExternalID == "" {
		m.ExternalID = v.ExternalID
	}
	v.apply(m, raw, s.newHashLocked())
	v.Updates++
	return result{"view": s.viewJSON(v)}, nil
}

func (v *storedView) apply(m modal, raw json.RawMessage, hash string) {
	v.Type = m.Type
	v.Title = m.Title.Text
	v.CallbackID = m.CallbackID
	v.PrivateMetadata = m.PrivateMetadata
	v.ExternalID = m.ExternalID
	v.JSON = raw
	v.Hash = hash
}

func (s *Server) viewByExternalLocked(ext string) *storedView {
	for _, v := range s.views {
		if v.ExternalID == ext {
			return v
		}
	}
	return nil
}

func (s *Server) newHashLocked() string {
	s.viewSeq++
	return fmt.Sprintf("%d.%08x", 1700000000+s.viewSeq, s.viewSeq)
}

// viewJSON is the view as views.open returns it: the bot's view plus the
// fields Slack adds.
func (s *Server) viewJSON(v *storedView) map[string]any {
	out := map[string]any{}
	_ = json.Unmarshal(v.JSON, &out)
	out["id"] = v.ID
	out["team_id"] = s.cfg.teamID
	out["app_id"] = s.cfg.appID
	out["bot_id"] = s.cfg.botID
	out["hash"] = v.Hash
	out["root_view_id"] = v.ID
	out["previous_view_id"] = nil
	out["state"] = map[string]any{"values": map[string]any{}}
	return out
}
