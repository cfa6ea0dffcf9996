package slacktest

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Slack lets a response_url be used 5 times within 30 minutes.
const (
	responseURLUses     = 5
	responseURLLifetime = 30 * time.Minute
)

// responseURL is one URL handed out. A benchmark has the fake hand out
// hundreds of thousands (one per command and click it makes), so they are
// kept in a table without pointers, which the garbage collector of the
// process under test skips: the bench then measures ssobot's collections,
// not the fake's.
type responseURL struct {
	channel   symbol
	messageTS symbol
	user      symbol
	issued    int64 // Unix nanoseconds, on the server's clock
	uses      int32
}

// symbol is a string interned in a Server's symbols; 0 is "".
type symbol int32

// symbols interns the few distinct strings the tables refer to.
type symbols struct {
	ids   map[string]symbol
	names []string
}

func (t *symbols) intern(name string) symbol {
	if name == "" {
		return 0
	}
	if id, ok := t.ids[name]; ok {
		return id
	}
	if t.ids == nil {
		t.ids, t.names = map[string]symbol{}, []string{""}
	}
	id := symbol(len(t.names))
	t.ids[name] = id
	t.names = append(t.names, name)
	return id
}

func (t *symbols) name(id symbol) string {
	if id == 0 {
		return ""
	}
	return t.names[id]
}

// NewResponseURL hands out a response_url served by the fake. POSTs to it
// are recorded as calls with Method MethodResponseURL and the JSON body
// (text, blocks, response_type, replace_original, delete_original) and
// change no message.
func (s *Server) NewResponseURL() string {
	return s.NewResponseURLFor("", "", "")
}

// NewResponseURLFor hands out a response_url tied to where the command or
// click came from, so that POSTs to it act like Slack's:
// delete_original deletes the message messageTS, replace_original edits it,
// response_type "in_channel" posts to channel (in thread_ts if given), and
// anything else posts an ephemeral to userID. Empty arguments disable the
// matching effect. Like Slack's, the URL works 5 times within 30 minutes;
// after that it answers 404 used_url or expired_url (Slack's exact wording
// there is not documented).
func (s *Server) NewResponseURLFor(channel, messageTS, userID string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.newResponseURLLocked(channel, messageTS, userID)
}

func (s *Server) newResponseURLLocked(channel, messageTS, userID string) string {
	s.respURLs = append(s.respURLs, responseURL{
		channel:   s.syms.intern(channel),
		messageTS: s.syms.intern(messageTS),
		user:      s.syms.intern(userID),
		issued:    s.cfg.now().UnixNano(),
	})
	return s.srv.URL + responsePrefix + strconv.Itoa(len(s.respURLs))
}

// responseURLLocked finds the URL whose path ends in id (its 1-based
// place in the table).
func (s *Server) responseURLLocked(id string) *responseURL {
	n, err := strconv.Atoi(id)
	if err != nil || n < 1 || n > len(s.respURLs) || strconv.Itoa(n) != id {
		return nil
	}
	return &s.respURLs[n-1]
}

func (s *Server) serveResponseURL(w http.ResponseWriter, r *http.Request) {
	if !s.delay(r.Context()) {
		return
	}
	id := strings.TrimPrefix(r.URL.Path, responsePrefix)
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes))
	var payload map[string]any
	if err == nil {
		err = json.Unmarshal(body, &payload)
	}

	s.mu.Lock()
	call := Call{Method: MethodResponseURL, JSON: payload, URL: s.srv.URL + r.URL.Path, At: s.cfg.now()}
	status, header, res := s.respondLocked(id, payload, err)
	call.Status = status
	call.Error, _ = res["error"].(string)
	call.Result = res
	s.recordLocked(call)
	s.mu.Unlock()

	writeJSON(w, status, header, res)
}

func (s *Server) respondLocked(id string, payload map[string]any, perr error) (int, http.Header, result) {
	if f, ok := s.takeFaultLocked(MethodResponseURL); ok {
		return faultResponse(f)
	}
	ru := s.responseURLLocked(id)
	switch {
	case ru == nil:
		return http.StatusNotFound, nil, result{"ok": false, "error": "invalid_url"}
	case ru.uses >= responseURLUses:
		return http.StatusNotFound, nil, result{"ok": false, "error": "used_url"}
	case s.cfg.now().Sub(time.Unix(0, ru.issued)) > responseURLLifetime:
		return http.StatusNotFound, nil, result{"ok": false, "error": "expired_url"}
	}
	if perr != nil {
		return http.StatusBadRequest, nil, result{"ok": false, "error": "invalid_payload"}
	}
	ru.uses++
	if e := s.applyResponseLocked(ru, params{json: payload}); e != nil {
		return http.StatusOK, nil, errorBody(e)
	}
	return http.StatusOK, nil, result{"ok": true}
}

func (s *Server) applyResponseLocked(ru *responseURL, p params) *apiError {
	channelID, messageTS, userID := s.syms.name(ru.channel), s.syms.name(ru.messageTS), s.syms.name(ru.user)
	if p.bool("delete_original") {
		if messageTS == "" {
			return nil
		}
		st := s.findLocked(channelID, messageTS)
		if st == nil || st.deleted {
			return errCode("message_not_found")
		}
		st.deleted = true
		return nil
	}
	c, e := readContent(p)
	if e != nil {
		return e
	}
	if c.empty() && !p.has("attachments") {
		return errCode("no_text")
	}
	switch {
	case p.bool("replace_original") && messageTS != "":
		st := s.findLocked(channelID, messageTS)
		if st == nil || st.deleted {
			return errCode("message_not_found")
		}
		st.Text, st.BlocksJSON = c.text, c.blocks
		st.Updates++
	case channelID == "":
	case p.str("response_type") == "in_channel":
		threadTS, e := s.threadLocked(channelID, p.str("thread_ts"))
		if e != nil {
			return e
		}
		s.addMessageLocked(Message{Channel: channelID, ThreadTS: threadTS, Text: c.text, BlocksJSON: c.blocks})
	default:
		s.addMessageLocked(Message{
			Channel:    channelID,
			ThreadTS:   p.str("thread_ts"),
			Text:       c.text,
			BlocksJSON: c.blocks,
			Ephemeral:  true,
			User:       userID,
		})
	}
	return nil
}
