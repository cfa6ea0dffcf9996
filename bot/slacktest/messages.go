package slacktest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/slack-go/slack"
)

// maxTextRunes is Slack's limit on a message's text (msg_too_long above it).
const maxTextRunes = 40000

// Message is a message as the fake stores it.
type Message struct {
	Channel string
	TS      string
	// ThreadTS is the root's ts for a reply, "" for a root message.
	ThreadTS string
	Text     string
	// Blocks is decoded afresh from BlocksJSON on every read.
	Blocks     []slack.Block
	BlocksJSON json.RawMessage
	Ephemeral  bool
	// User is the recipient of an ephemeral message.
	User           string
	ReplyBroadcast bool
	// Updates counts the edits (chat.update, response_url replace_original).
	Updates int
}

// Button is an interactive button found in a message's blocks.
type Button struct {
	BlockID  string
	ActionID string
	Value    string
	Text     string
	Style    string
	URL      string
}

// Buttons returns the buttons of the message's actions blocks and section
// accessories, in order.
func (m Message) Buttons() []Button {
	var out []Button
	add := func(blockID string, b *slack.ButtonBlockElement) {
		btn := Button{BlockID: blockID, ActionID: b.ActionID, Value: b.Value, Style: string(b.Style), URL: b.URL}
		if b.Text != nil {
			btn.Text = b.Text.Text
		}
		out = append(out, btn)
	}
	for _, blk := range m.Blocks {
		switch b := blk.(type) {
		case *slack.ActionBlock:
			if b.Elements == nil {
				continue
			}
			for _, el := range b.Elements.ElementSet {
				if btn, ok := el.(*slack.ButtonBlockElement); ok {
					add(b.BlockID, btn)
				}
			}
		case *slack.SectionBlock:
			if b.Accessory != nil && b.Accessory.ButtonElement != nil {
				add(b.BlockID, b.Accessory.ButtonElement)
			}
		}
	}
	return out
}

// Button returns the first button with the given action_id.
func (m Message) Button(actionID string) (Button, bool) {
	for _, b := range m.Buttons() {
		if b.ActionID == actionID {
			return b, true
		}
	}
	return Button{}, false
}

// PlainText is the message's text followed by every text in its blocks
// (section, context, header, button labels...), one per line, in order. It
// is meant for assertions like strings.Contains(m.PlainText(), "approved").
func (m Message) PlainText() string {
	parts := []string{}
	if m.Text != "" {
		parts = append(parts, m.Text)
	}
	parts = append(parts, blockTexts(m.BlocksJSON)...)
	return strings.Join(parts, "\n")
}

// blockTexts collects the string values of "text" keys in document order
// (a token walk, as map iteration would lose the order).
func blockTexts(raw []byte) []string {
	type frame struct {
		obj       bool
		expectKey bool
		key       string
	}
	var (
		stack []frame
		out   []string
	)
	valueDone := func() {
		if n := len(stack); n > 0 && stack[n-1].obj {
			stack[n-1].expectKey = true
		}
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	for {
		tok, err := dec.Token()
		if err != nil {
			return out
		}
		n := len(stack)
		if n > 0 && stack[n-1].obj && stack[n-1].expectKey {
			if tok == json.Delim('}') {
				stack = stack[:n-1]
				valueDone()
				continue
			}
			stack[n-1].key, _ = tok.(string)
			stack[n-1].expectKey = false
			continue
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, frame{obj: true, expectKey: true})
			continue
		case json.Delim('['):
			stack = append(stack, frame{})
			continue
		case json.Delim(']'):
			if n > 0 {
				stack = stack[:n-1]
			}
			valueDone()
			continue
		}
		if str, ok := tok.(string); ok && n > 0 && stack[n-1].obj && stack[n-1].key == "text" {
			out = append(out, str)
		}
		valueDone()
	}
}

type stored struct {
	Message
	deleted bool
}

func (st *stored) public() Message {
	m := st.Message
	m.BlocksJSON = append(json.RawMessage(nil), st.BlocksJSON...)
	if len(m.BlocksJSON) > 0 {
		var bs slack.Blocks
		if err := json.Unmarshal(m.BlocksJSON, &bs); err == nil {
			m.Blocks = bs.BlockSet
		}
	} else {
		m.BlocksJSON = nil
	}
	return m
}

// Message returns a stored message (root, reply or ephemeral) unless it was
// deleted.
func (s *Server) Message(channel, ts string) (Message, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.findLocked(channel, ts)
	if st == nil || st.deleted {
		return Message{}, false
	}
	return st.public(), true
}

// Messages returns the channel's messages that were not deleted, roots,
// replies and ephemerals alike, in the order they were posted.
func (s *Server) Messages(channel string) []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Message
	for _, st := range s.msgs[channel] {
		if !st.deleted {
			out = append(out, st.public())
		}
	}
	return out
}

// Thread returns the root message ts (unless deleted) followed by its
// replies, like conversations.replies; ephemerals posted in the thread are
// included and marked Ephemeral.
func (s *Server) Thread(channel, ts string) []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Message
	for _, st := range s.msgs[channel] {
		if st.deleted {
			continue
		}
		if (st.TS == ts && st.ThreadTS == "") || st.ThreadTS == ts {
			out = append(out, st.public())
		}
	}
	return out
}

// DeleteMessage simulates a person deleting a message: it disappears, later
// chat.update and chat.delete on it fail with message_not_found, and replies
// can still be posted under it (Slack keeps a tombstone).
func (s *Server) DeleteMessage(channel, ts string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.findLocked(channel, ts); st != nil {
		st.deleted = true
		s.notifyLocked()
	}
}

func (s *Server) findLocked(channel, ts string) *stored {
	return s.byTS[channel+"|"+ts]
}

// nextTSLocked returns a unique, increasing message timestamp; a sequence
// rather than the clock keeps runs reproducible.
func (s *Server) nextTSLocked() string {
	s.tsSeq++
	micros := 100 * s.tsSeq
	return fmt.Sprintf("%d.%06d", 1700000000+micros/1_000_000, micros%1_000_000)
}

func (s *Server) addMessageLocked(m Message) *stored {
	m.TS = s.nextTSLocked()
	st := &stored{Message: m}
	s.msgs[m.Channel] = append(s.msgs[m.Channel], st)
	// Looked up by every update and reply: an index keeps a long benchmark
	// from measuring the fake's scans.
	s.byTS[m.Channel+"|"+m.TS] = st
	return st
}

func (s *Server) messageJSON(st *stored) map[string]any {
	m := map[string]any{
		"type":   "message",
		"text":   st.Text,
		"user":   s.cfg.botUserID,
		"bot_id": s.cfg.botID,
		"app_id": s.cfg.appID,
		"team":   s.cfg.teamID,
		"ts":     st.TS,
	}
	if st.ThreadTS != "" {
		m["thread_ts"] = st.ThreadTS
	}
	if len(st.BlocksJSON) > 0 {
		m["blocks"] = json.RawMessage(st.BlocksJSON)
	}
	return m
}

// content is a message body taken from a request.
type content struct {
	text      string
	hasText   bool
	blocks    json.RawMessage // compacted; nil when absent
	hasBlocks bool
	nBlocks   int
}

func (c content) empty() bool {
	return c.text == "" && c.nBlocks == 0
}

// readContent validates text and blocks the way Slack does for messages.
func readContent(p params) (content, *apiError) {
	c := content{text: p.str("text"), hasText: p.has("text")}
	if utf8.RuneCountInString(c.text) > maxTextRunes {
		return c, errCode("msg_too_long")
	}
	raw, ok := p.raw("blocks")
	if !ok {
		return c, nil
	}
	n, problems := validateBlocks(raw, maxMessageBlocks)
	if len(problems) > 0 {
		return c, errCode("invalid_blocks", problems...)
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return c, errCode("invalid_blocks", "[ERROR] blocks must be a JSON array")
	}
	c.hasBlocks, c.nBlocks = true, n
	if n > 0 {
		c.blocks = buf.Bytes()
	}
	return c, nil
}

func (s *Server) chatPostMessage(p params) (result, *apiError) {
	ch, e := s.postableChannelLocked(p.str("channel"))
	if e != nil {
		return nil, e
	}
	c, e := readContent(p)
	if e != nil {
		return nil, e
	}
	if c.empty() && !p.has("attachments") {
		return nil, errCode("no_text")
	}
	threadTS, e := s.threadLocked(ch.id, p.str("thread_ts"))
	if e != nil {
		return nil, e
	}
	st := s.addMessageLocked(Message{
		Channel:        ch.id,
		ThreadTS:       threadTS,
		Text:           c.text,
		BlocksJSON:     c.blocks,
		ReplyBroadcast: threadTS != "" && p.bool("reply_broadcast"),
	})
	return result{"channel": ch.id, "ts": st.TS, "message": s.messageJSON(st)}, nil
}

// threadLocked resolves thread_ts: a reply's ts files under its root, as in
// Slack. Slack's answer to an unknown thread_ts is not documented; the fake
// refuses it with thread_not_found so that such bugs show up in tests.
func (s *Server) threadLocked(channel, threadTS string) (string, *apiError) {
	if threadTS == "" {
		return "", nil
	}
	parent := s.findLocked(channel, threadTS)
	if parent == nil || parent.Ephemeral {
		return "", errCode("thread_not_found")
	}
	if parent.ThreadTS != "" {
		return parent.ThreadTS, nil
	}
	return parent.TS, nil
}

func (s *Server) chatUpdate(p params) (result, *apiError) {
	ch := s.channelLocked(p.str("channel"))
	if ch == nil {
		return nil, errCode("channel_not_found")
	}
	st := s.findLocked(ch.id, p.str("ts"))
	if st == nil || st.deleted || st.Ephemeral {
		return nil, errCode("message_not_found")
	}
	c, e := readContent(p)
	if e != nil {
		return nil, e
	}
	if !c.hasText && !c.hasBlocks && !p.has("attachments") {
		return nil, errCode("no_text")
	}
	text, blocks := st.Text, st.BlocksJSON
	if c.hasText {
		text = c.text
	}
	if c.hasBlocks {
		blocks = c.blocks
	}
	if text == "" && len(blocks) == 0 && !p.has("attachments") {
		return nil, errCode("no_text")
	}
	st.Text, st.BlocksJSON = text, blocks
	st.Updates++
	return result{"channel": ch.id, "ts": st.TS, "text": st.Text, "message": s.messageJSON(st)}, nil
}

func (s *Server) chatPostEphemeral(p params) (result, *apiError) {
	ch, e := s.postableChannelLocked(p.str("channel"))
	if e != nil {
		return nil, e
	}
	// The fake does not track channel membership of people, so any known,
	// active user counts as a member.
	user := p.str("user")
	if u, ok := s.users[user]; !ok || u.Deleted {
		return nil, errCode("user_not_in_channel")
	}
	c, e := readContent(p)
	if e != nil {
		return nil, e
	}
	if c.empty() && !p.has("attachments") {
		return nil, errCode("no_text")
	}
	st := s.addMessageLocked(Message{
		Channel:    ch.id,
		ThreadTS:   p.str("thread_ts"),
		Text:       c.text,
		BlocksJSON: c.blocks,
		Ephemeral:  true,
		User:       user,
	})
	return result{"message_ts": st.TS}, nil
}

func (s *Server) chatDelete(p params) (result, *apiError) {
	ch := s.channelLocked(p.str("channel"))
	if ch == nil {
		return nil, errCode("channel_not_found")
	}
	st := s.findLocked(ch.id, p.str("ts"))
	if st == nil || st.deleted || st.Ephemeral {
		return nil, errCode("message_not_found")
	}
	st.deleted = true
	return result{"channel": ch.id, "ts": st.TS}, nil
}

func (s *Server) chatGetPermalink(p params) (result, *apiError) {
	ch := s.channelLocked(p.str("channel"))
	if ch == nil {
		return nil, errCode("channel_not_found")
	}
	st := s.findLocked(ch.id, p.str("message_ts"))
	if st == nil || st.deleted || st.Ephemeral {
		return nil, errCode("message_not_found")
	}
	return result{"channel": ch.id, "permalink": Permalink(s.cfg.teamDomain, ch.id, st.TS)}, nil
}

// Permalink is the link chat.getPermalink returns for a message.
func Permalink(teamDomain, channel, ts string) string {
	return "https://" + teamDomain + ".slack.com/archives/" + channel + "/p" + strings.ReplaceAll(ts, ".", "")
}
