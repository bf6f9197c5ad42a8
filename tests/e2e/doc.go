// Package e2e is Myelin's black-box suite: every test starts a real myelin
// process (internal/testserver) on SQLite and on PostgreSQL and drives it
// over HTTP with maunium.net/go/mautrix, the way Element and the bridges do,
// plus raw requests where a client library would refuse to send bad input.
// It imports no server package: if a test here needs to know something, a
// client must be able to find it out too.
package e2e
