package media

import (
	"crypto/rand"
	"regexp"
)

// idAlphabet is what generated media IDs are made of: letters and digits
// only, so an ID is safe in a URL path, a log line and a file name alike
// (although it never names a file: the database row does).
const idAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// idLength gives 62^24 ≈ 2^143 possible IDs: unguessable, so knowing an
// mxc:// URI is the capability the spec makes it.
const idLength = 24

// mediaIDPattern is the spec's media-id grammar ("MUST consist of only
// alphanumeric, _ and -"), bounded in length. Every media ID from a request
// is checked against it before any lookup; an allow-list, because
// blacklisting "." and "/" loses to encodings (%2e%2e, overlong UTF-8, NUL).
var mediaIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,255}$`)

// ValidMediaID reports whether id may be looked up at all.
func ValidMediaID(id string) bool { return mediaIDPattern.MatchString(id) }

// serverNamePattern is the appendix's server-name grammar: a DNS name, an
// IPv4 address or a bracketed IPv6 literal, with an optional port.
var serverNamePattern = regexp.MustCompile(`^(?:[A-Za-z0-9.-]{1,255}|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?$`)

// ValidServerName reports whether name is a syntactically valid server name.
func ValidServerName(name string) bool { return serverNamePattern.MatchString(name) }

// newMediaID returns a fresh random media ID.
func newMediaID() string {
	// Rejection sampling keeps every letter equally likely: bytes >= 248
	// (the largest multiple of 62 below 256) are skipped.
	out := make([]byte, 0, idLength)
	buf := make([]byte, 2*idLength)
	for len(out) < idLength {
		_, _ = rand.Read(buf) // crypto/rand.Read never fails (Go 1.24+)
		for _, b := range buf {
			if b < 248 && len(out) < idLength {
				out = append(out, idAlphabet[int(b)%len(idAlphabet)])
			}
		}
	}
	return string(out)
}
