// Package report owns the human summary of a Complement run: which area of
// the Matrix spec each test exercises, the known reason for each failure
// (docs/conformance/reasons.txt), and the generated part of
// docs/conformance.md.
package report

import (
	"path"
	"regexp"
	"strings"
)

// Area is a part of the Matrix spec a group of tests exercises.
type Area struct {
	Slug  string // short key used in reasons.txt, e.g. "rooms"
	Title string // what the area covers
}

// areaRule assigns tests whose top-level name matches to an area. Rules are
// tried in order, so specific topics (federation, media) come before broad
// ones (rooms).
type areaRule struct {
	area    Area
	pattern *regexp.Regexp
}

var areaRules = []areaRule{
	{Area{"federation", "server-server API: joins, sends, invites, keys, backfill, auth over federation"},
		regexp.MustCompile(`Federation|Federated|Remote|Inbound|Outbound|SendJoin|SendLeave|SendKnock|NetworkPartition|MissingEvent|Unreject|EventAuth|ACLs|JoinVia|BannedUserCannotSendJoin|PartialState`)},
	{Area{"media", "media repository: upload, download, thumbnails, URL previews"},
		regexp.MustCompile(`Content|Media|AsyncUpload|Image|Thumbnail|UrlPreview`)},
	{Area{"accounts", "registration, login, logout, passwords, deactivation"},
		regexp.MustCompile(`^Test(Registration|CanRegisterAdmin|Login|Logout|ChangePassword|DeactivateAccount)`)},
	{Area{"profile", "display names and avatars"},
		regexp.MustCompile(`Profile|DisplayName|AvatarUrl|RoomSpecificUsername`)},
	{Area{"e2ee", "devices, device lists, E2EE keys, key backup, to-device messages"},
		regexp.MustCompile(`Device|Key|ToDevice|E2E`)},
	{Area{"ephemeral", "presence, typing, receipts, read markers"},
		regexp.MustCompile(`Presence|Typing|Receipt|ReadMarker`)},
	{Area{"sync", "/sync, filters, leave/archived sections"},
		regexp.MustCompile(`Sync|Gapped|ArchivedRooms|OlderLeftRooms|LeaveEvent|Filter|TentativeEventual`)},
	{Area{"account-data", "account data, push rules, ignored users, server notices"},
		regexp.MustCompile(`AccountData|MDirect|IsDirect|Push|ServerNotices|Ignored`)},
	{Area{"knock-restricted", "knocking, restricted join rules"},
		regexp.MustCompile(`Knock|Restricted`)},
	{Area{"spaces", "space hierarchy / summary"},
		regexp.MustCompile(`Spaces|Hierarchy`)},
	{Area{"messages", "sending and fetching events, relations, threads, transactions, search"},
		regexp.MustCompile(`Message|Relations|Thread|Txn|Event|Fetch|Search|Json|JumpToDate|Redact`)},
	{Area{"rooms", "room creation, membership, state, aliases, power levels"},
		regexp.MustCompile(`Room|Alias|Member|PowerLevel|Kick|Ban|Invite|Join|Leave|Forget|LeftRoom|Users`)},
	{Area{"server", "versions, capabilities, unknown endpoints, request encoding"},
		regexp.MustCompile(`Version|Capabilities|UnknownEndpoints|RequestEncoding`)},
}

// mscTitles names what each experimental-MSC package covers.
var mscTitles = map[string]string{
	"msc2836": "MSC2836 event relationships (threading)",
	"msc3391": "MSC3391 deleting account data",
	"msc3757": "MSC3757 owned state events",
	"msc3874": "MSC3874 filtering /messages by relation type",
	"msc3890": "MSC3890 local notification settings",
	"msc3902": "MSC3902 faster remote joins (partial state)",
	"msc3930": "MSC3930 push rules for polls",
	"msc3967": "MSC3967 no UIA for first cross-signing key upload",
	"msc4140": "MSC4140 delayed events",
}

var (
	otherArea = Area{"other", "not classified"}
	jssdkArea = Area{"jssdk", "matrix-js-sdk end-to-end smoke (Element Web's engine): register, room, send, sync, E2EE"}
)

// AreaOf returns the area of a test (any subtest name is ignored).
func AreaOf(pkg, test string) Area {
	if pkg == "jssdk" {
		return jssdkArea
	}
	if base := path.Base(pkg); strings.HasPrefix(base, "msc") {
		title := mscTitles[base]
		if title == "" {
			title = strings.ToUpper(base) + " (experimental)"
		}
		return Area{base, title}
	}
	top, _, _ := strings.Cut(test, "/")
	for _, r := range areaRules {
		if r.pattern.MatchString(top) {
			return r.area
		}
	}
	return otherArea
}

// Areas lists the areas in the order the summary shows them.
func Areas() []Area {
	out := make([]Area, 0, len(areaRules)+1)
	for _, r := range areaRules {
		out = append(out, r.area)
	}
	return append(out, otherArea)
}
