package syncapi

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"myelin/internal/apierr"
)

// Token is a position in every stream /sync serves. Encoded, it is the
// opaque next_batch / since string; it names positions only, never
// process state, so it stays valid across restarts:
//
//   - Events: the roomserver's stream position (events.event_nid);
//   - AccountData, Receipts, Presence: syncapi's durable streams
//     (stream_pos columns), numbered from the database's maximum at start;
//   - Typing: the in-memory typing stream, numbered from the process's
//     start time in milliseconds so a later process's positions are
//     higher than an earlier one's (see typing.go);
//   - Ext: streams kept by providers (to-device, device lists), by key.
type Token struct {
	Events      int64
	AccountData int64
	Receipts    int64
	Typing      int64
	Presence    int64
	Ext         map[string]int64
}

// Stream keys in encoded tokens; providers' keys must differ. The event
// position is written first, without its key.
const (
	keyEvents      = "e"
	keyAccountData = "a"
	keyReceipts    = "r"
	keyTyping      = "y"
	keyPresence    = "p"
)

var coreKeys = map[string]bool{keyEvents: true, keyAccountData: true, keyReceipts: true, keyTyping: true, keyPresence: true}

// validKey reports whether k can name a stream in a token: lowercase
// ASCII letters only, so the digits that follow are unambiguous.
func validKey(k string) bool {
	if k == "" || len(k) > 8 {
		return false
	}
	for _, c := range k {
		if c < 'a' || c > 'z' {
			return false
		}
	}
	return true
}

// String encodes the token: "s", the event position, then
// "_<key><position>" per other stream, e.g. "s120_a4_r9_y1718000000000_p3".
// The event position comes first and bare so that readers which only need
// it (the `at` of /members) find it without knowing the other streams.
func (t Token) String() string {
	var b strings.Builder
	b.WriteString("s")
	b.WriteString(strconv.FormatInt(t.Events, 10))
	add := func(k string, v int64) {
		b.WriteByte('_')
		b.WriteString(k)
		b.WriteString(strconv.FormatInt(v, 10))
	}
	add(keyAccountData, t.AccountData)
	add(keyReceipts, t.Receipts)
	add(keyTyping, t.Typing)
	add(keyPresence, t.Presence)
	keys := make([]string, 0, len(t.Ext))
	for k := range t.Ext {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		add(k, t.Ext[k])
	}
	return b.String()
}

// ParseToken decodes a since token. Missing streams are 0 (from the
// start); unknown keys are kept in Ext (a provider removed from the
// configuration must not invalidate every client's token).
func ParseToken(s string) (Token, error) {
	bad := apierr.InvalidParam("invalid since token")
	rest, ok := strings.CutPrefix(s, "s")
	if !ok || rest == "" || len(s) > 512 {
		return Token{}, bad
	}
	segs := strings.Split(rest, "_")
	var t Token
	var err error
	if t.Events, err = strconv.ParseInt(segs[0], 10, 64); err != nil || t.Events < 0 || segs[0][0] < '0' || segs[0][0] > '9' {
		return Token{}, bad
	}
	seen := map[string]bool{}
	for _, seg := range segs[1:] {
		i := strings.IndexFunc(seg, func(r rune) bool { return r >= '0' && r <= '9' })
		if i <= 0 {
			return Token{}, bad
		}
		key := seg[:i]
		v, err := strconv.ParseInt(seg[i:], 10, 64)
		if !validKey(key) || key == keyEvents || err != nil || v < 0 || seen[key] {
			return Token{}, bad
		}
		seen[key] = true
		switch key {
		case keyAccountData:
			t.AccountData = v
		case keyReceipts:
			t.Receipts = v
		case keyTyping:
			t.Typing = v
		case keyPresence:
			t.Presence = v
		default:
			if t.Ext == nil {
				t.Ext = map[string]int64{}
			}
			t.Ext[key] = v
		}
	}
	return t, nil
}

// sameAs reports whether two tokens name the same positions in every
// stream the current token has.
func (t Token) sameAs(cur Token) bool {
	if t.Events != cur.Events || t.AccountData != cur.AccountData || t.Receipts != cur.Receipts ||
		t.Typing != cur.Typing || t.Presence != cur.Presence {
		return false
	}
	for k, v := range cur.Ext {
		if t.Ext[k] != v {
			return false
		}
	}
	return true
}

// A pagination token is a point in a room's history: "t<p>" is the point
// just after the event at stream position p (every event at or below p is
// before it). prev_batch, /messages start/end and /context start/end are
// such points. /messages also accepts a since token (its event position).
func pageToken(p int64) string { return "t" + strconv.FormatInt(p, 10) }

// parsePageToken reads a pagination token or a since token into a point.
func parsePageToken(s string) (int64, error) {
	if rest, ok := strings.CutPrefix(s, "t"); ok {
		p, err := strconv.ParseInt(rest, 10, 64)
		if err != nil || p < 0 {
			return 0, apierr.InvalidParam(fmt.Sprintf("invalid pagination token %q", truncate(s, 64)))
		}
		return p, nil
	}
	t, err := ParseToken(s)
	if err != nil {
		return 0, apierr.InvalidParam(fmt.Sprintf("invalid pagination token %q", truncate(s, 64)))
	}
	return t.Events, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
