package slacktest

import (
	"slices"
	"strings"

	"github.com/slack-go/slack"
)

// User is a workspace member as users.info reports it.
type User struct {
	ID          string
	Name        string
	RealName    string
	DisplayName string
	Email       string
	TZ          string
	IsBot       bool
	IsAppUser   bool
	Deleted     bool
	IsAdmin     bool
	IsOwner     bool
	// IsRestricted marks guests (multi-channel guests; single-channel guests
	// are also IsUltraRestricted).
	IsRestricted      bool
	IsUltraRestricted bool
}

func (u User) slack(teamID string) slack.User {
	return slack.User{
		ID:                u.ID,
		TeamID:            teamID,
		Name:              u.Name,
		RealName:          u.RealName,
		TZ:                u.TZ,
		Deleted:           u.Deleted,
		IsBot:             u.IsBot,
		IsAppUser:         u.IsAppUser,
		IsAdmin:           u.IsAdmin,
		IsOwner:           u.IsOwner,
		IsRestricted:      u.IsRestricted,
		IsUltraRestricted: u.IsUltraRestricted,
		Profile: slack.UserProfile{
			RealName:    u.RealName,
			DisplayName: u.DisplayName,
			Email:       u.Email,
			Team:        teamID,
		},
	}
}

// AddUser adds or replaces a workspace member.
func (s *Server) AddUser(u User) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users[u.ID] = u
}

// AddUserGroup adds or replaces a user group (subteam) and its members.
func (s *Server) AddUserGroup(id string, members ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.groups[id] = slices.Clone(members)
}

// SetUserGroupsUnavailable makes usergroups.users.list fail with
// plan_upgrade_required, as on free workspaces.
func (s *Server) SetUserGroupsUnavailable(unavailable bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.noGroups = unavailable
}

type channel struct {
	id     string
	name   string
	member bool   // the bot is in it
	dmUser string // set for the bot's DM with a user
}

// AddChannel adds or replaces a public channel. Posting to a channel the bot
// is not in fails with not_in_channel; unknown channels give
// channel_not_found.
func (s *Server) AddChannel(id, name string, botIsMember bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.channels[id] = &channel{id: id, name: name, member: botIsMember}
}

// DMChannel is the channel ID of the bot's direct message with a user, as
// chat.postMessage to the user ID creates it.
func DMChannel(userID string) string { return "D" + userID }

// postableChannelLocked resolves a channel argument the way chat.* methods do:
// an ID, a #name, or a user ID (the bot's DM with that user).
func (s *Server) postableChannelLocked(arg string) (*channel, *apiError) {
	ch := s.channelLocked(arg)
	if ch == nil {
		if u, ok := s.users[arg]; ok && !u.IsBot {
			ch = &channel{id: DMChannel(u.ID), member: true, dmUser: u.ID}
			s.channels[ch.id] = ch
		}
	}
	if ch == nil {
		return nil, errCode("channel_not_found")
	}
	if !ch.member {
		return nil, errCode("not_in_channel")
	}
	return ch, nil
}

func (s *Server) channelLocked(arg string) *channel {
	if arg == "" {
		return nil
	}
	if ch, ok := s.channels[arg]; ok {
		return ch
	}
	if name, ok := strings.CutPrefix(arg, "#"); ok {
		for _, ch := range s.channels {
			if ch.name == name {
				return ch
			}
		}
	}
	return nil
}

func (s *Server) usersInfo(p params) (result, *apiError) {
	u, ok := s.users[p.str("user")]
	if !ok {
		return nil, errCode("user_not_found")
	}
	return result{"user": u.slack(s.cfg.teamID)}, nil
}

func (s *Server) usergroupsUsersList(p params) (result, *apiError) {
	if s.noGroups {
		return nil, errCode("plan_upgrade_required")
	}
	members, ok := s.groups[p.str("usergroup")]
	if !ok {
		return nil, errCode("no_such_subteam")
	}
	return result{"users": append([]string{}, members...)}, nil
}

func (s *Server) conversationsInfo(p params) (result, *apiError) {
	ch := s.channelLocked(p.str("channel"))
	if ch == nil {
		return nil, errCode("channel_not_found")
	}
	info := map[string]any{
		"id":         ch.id,
		"name":       ch.name,
		"is_member":  ch.member,
		"is_channel": ch.dmUser == "",
		"is_im":      ch.dmUser != "",
		"is_private": false,
	}
	if ch.dmUser != "" {
		info["user"] = ch.dmUser
	}
	return result{"channel": info}, nil
}
