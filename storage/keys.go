package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
)

// Keys is the portable SQL behind end-to-end encryption (package e2ee):
// device identity keys, one-time and fallback keys, cross-signing keys and
// signatures, the device-list stream (this file), send-to-device messages
// (todevice.go) and key backups (keys_backup.go). Migrations 0020–0022.
//
// Everything here belongs to local users and is keyed by localpart, like
// the devices table it extends; package e2ee maps Matrix user IDs. Reads go
// to db.R, writes to db.W through db.Tx; each operation is one transaction.
type Keys struct {
	db *DB
}

// NewKeys returns the keys store on db.
func NewKeys(db *DB) *Keys { return &Keys{db: db} }

// The E2EE streams (rows of e2ee_streams).
const (
	StreamToDevice    = "to_device"
	StreamDeviceLists = "device_lists"
)

// KeyConflict says an upload contradicts what is stored: Kind is
// "device_keys" (other identity keys for the same device), "one_time_key"
// (a key ID reused with other content) or "key_id" (a cross-signing public
// key equal to one of the user's device IDs). It matches ErrConflict.
type KeyConflict struct {
	Kind string
	ID   string
}

func (e *KeyConflict) Error() string {
	return fmt.Sprintf("storage: %s %s conflicts with a stored key", e.Kind, e.ID)
}

// Is makes errors.Is(err, ErrConflict) true.
func (e *KeyConflict) Is(target error) bool { return target == ErrConflict }

// ErrAuthRequired is returned by UploadCrossSigningKeys when the upload
// would replace stored keys and no user-interactive-auth session was given.
var ErrAuthRequired = errors.New("storage: user-interactive auth required")

// StreamPosition is the committed position of an E2EE stream.
func (k *Keys) StreamPosition(ctx context.Context, stream string) (int64, error) {
	var pos int64
	err := k.db.R.QueryRowContext(ctx, `SELECT pos FROM e2ee_streams WHERE name = $1`, stream).Scan(&pos)
	if err != nil {
		return 0, fmt.Errorf("read %s position: %w", stream, err)
	}
	return pos, nil
}

// advanceStream reserves n positions of a stream inside tx and returns the
// last; the reserved range is (last-n, last]. The row stays locked until
// tx ends, which orders the stream's commits by position.
func advanceStream(ctx context.Context, tx *sql.Tx, stream string, n int) (int64, error) {
	var pos int64
	err := tx.QueryRowContext(ctx, `UPDATE e2ee_streams SET pos = pos + $2 WHERE name = $1 RETURNING pos`, stream, n).Scan(&pos)
	if err != nil {
		return 0, fmt.Errorf("advance %s stream: %w", stream, err)
	}
	return pos, nil
}

// recordDeviceListChange appends one device-list change per localpart at
// a new stream position and returns it.
func recordDeviceListChange(ctx context.Context, tx *sql.Tx, localparts ...string) (int64, error) {
	pos, err := advanceStream(ctx, tx, StreamDeviceLists, 1)
	if err != nil {
		return 0, err
	}
	seen := map[string]bool{}
	for _, l := range localparts {
		if seen[l] {
			continue
		}
		seen[l] = true
		if _, err := tx.ExecContext(ctx, `INSERT INTO device_list_changes (stream_pos, localpart) VALUES ($1, $2)`, pos, l); err != nil {
			return 0, fmt.Errorf("record device-list change: %w", err)
		}
	}
	return pos, nil
}

// DeviceKeys is a device's identity key object.
type DeviceKeys struct {
	JSON        []byte // canonical JSON as uploaded, without "unsigned"
	Fingerprint string // hash of the object without signatures
	Ed25519     string // the device's signing key
}

// OneTimeKey is a one-time or fallback key.
type OneTimeKey struct {
	Algorithm string
	KeyID     string
	JSON      []byte // the key: a JSON string or object
}

// KeyUpload is one /keys/upload request of a device.
type KeyUpload struct {
	Localpart    string
	DeviceID     string
	DeviceKeys   *DeviceKeys // nil: none in this request
	OneTimeKeys  []OneTimeKey
	FallbackKeys []OneTimeKey // at most one per algorithm
	TS           int64
}

// Upload stores a device's keys in one transaction and returns the
// device's unclaimed one-time key counts, and the device-list position it
// recorded (0 when the device's identity keys were already stored).
// Identity keys that differ from the stored ones and one-time key IDs
// reused with other content are refused with a *KeyConflict, and then
// nothing is stored. The device must exist (ErrNotFound otherwise: it was
// deleted while the request ran).
func (k *Keys) Upload(ctx context.Context, u KeyUpload) (counts map[string]int, pos int64, err error) {
	err = k.db.Tx(ctx, func(tx *sql.Tx) error {
		if ok, err := deviceExists(ctx, tx, u.Localpart, u.DeviceID); err != nil || !ok {
			if err == nil {
				err = ErrNotFound
			}
			return err
		}
		if dk := u.DeviceKeys; dk != nil {
			res, err := tx.ExecContext(ctx, `INSERT INTO device_keys (localpart, device_id, key_json, fingerprint, ed25519, created_ts)
				VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (localpart, device_id) DO NOTHING`,
				u.Localpart, u.DeviceID, string(dk.JSON), dk.Fingerprint, dk.Ed25519, u.TS)
			if err != nil {
				return fmt.Errorf("insert device keys: %w", err)
			}
			if n, _ := res.RowsAffected(); n == 1 {
				if pos, err = recordDeviceListChange(ctx, tx, u.Localpart); err != nil {
					return err
				}
			} else {
				var fp string
				if err := tx.QueryRowContext(ctx, `SELECT fingerprint FROM device_keys WHERE localpart = $1 AND device_id = $2`,
					u.Localpart, u.DeviceID).Scan(&fp); err != nil {
					return fmt.Errorf("select device keys: %w", err)
				}
				if fp != dk.Fingerprint {
					return &KeyConflict{Kind: "device_keys", ID: u.DeviceID}
				}
			}
		}
		if len(u.OneTimeKeys) > 0 {
			var batch int64
			if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(batch), 0) + 1 FROM one_time_keys WHERE localpart = $1 AND device_id = $2`,
				u.Localpart, u.DeviceID).Scan(&batch); err != nil {
				return fmt.Errorf("select one-time key batch: %w", err)
			}
			for _, key := range u.OneTimeKeys {
				res, err := tx.ExecContext(ctx, `INSERT INTO one_time_keys (localpart, device_id, algorithm, key_id, key_json, batch)
					VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (localpart, device_id, algorithm, key_id) DO NOTHING`,
					u.Localpart, u.DeviceID, key.Algorithm, key.KeyID, string(key.JSON), batch)
				if err != nil {
					return fmt.Errorf("insert one-time key: %w", err)
				}
				if n, _ := res.RowsAffected(); n == 1 {
					continue
				}
				var stored string
				if err := tx.QueryRowContext(ctx, `SELECT key_json FROM one_time_keys WHERE localpart = $1 AND device_id = $2 AND algorithm = $3 AND key_id = $4`,
					u.Localpart, u.DeviceID, key.Algorithm, key.KeyID).Scan(&stored); err != nil {
					return fmt.Errorf("select one-time key: %w", err)
				}
				if stored != string(key.JSON) {
					return &KeyConflict{Kind: "one_time_key", ID: key.Algorithm + ":" + key.KeyID}
				}
			}
		}
		for _, key := range u.FallbackKeys {
			// The same key uploaded again keeps its used flag: a retried
			// upload must not resurrect a fallback key already handed out.
			if _, err := tx.ExecContext(ctx, `INSERT INTO fallback_keys (localpart, device_id, algorithm, key_id, key_json, used)
				VALUES ($1, $2, $3, $4, $5, FALSE)
				ON CONFLICT (localpart, device_id, algorithm) DO UPDATE SET key_id = excluded.key_id, key_json = excluded.key_json,
					used = CASE WHEN fallback_keys.key_id = excluded.key_id AND fallback_keys.key_json = excluded.key_json THEN fallback_keys.used ELSE FALSE END`,
				u.Localpart, u.DeviceID, key.Algorithm, key.KeyID, string(key.JSON)); err != nil {
				return fmt.Errorf("store fallback key: %w", err)
			}
		}
		counts, err = oneTimeKeyCounts(ctx, tx, u.Localpart, u.DeviceID)
		return err
	})
	if err != nil {
		return nil, 0, err
	}
	return counts, pos, nil
}

type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func oneTimeKeyCounts(ctx context.Context, q queryer, localpart, deviceID string) (map[string]int, error) {
	rows, err := q.QueryContext(ctx, `SELECT algorithm, COUNT(*) FROM one_time_keys WHERE localpart = $1 AND device_id = $2 GROUP BY algorithm`, localpart, deviceID)
	if err != nil {
		return nil, fmt.Errorf("count one-time keys: %w", err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var alg string
		var n int
		if err := rows.Scan(&alg, &n); err != nil {
			return nil, fmt.Errorf("count one-time keys: %w", err)
		}
		out[alg] = n
	}
	return out, rows.Err()
}

// OneTimeKeyCounts returns a device's unclaimed one-time keys per algorithm.
func (k *Keys) OneTimeKeyCounts(ctx context.Context, localpart, deviceID string) (map[string]int, error) {
	return oneTimeKeyCounts(ctx, k.db.R, localpart, deviceID)
}

// UnusedFallbackKeyTypes lists the algorithms of a device's fallback keys
// that no claim has handed out yet, sorted.
func (k *Keys) UnusedFallbackKeyTypes(ctx context.Context, localpart, deviceID string) ([]string, error) {
	rows, err := k.db.R.QueryContext(ctx, `SELECT algorithm FROM fallback_keys WHERE localpart = $1 AND device_id = $2 AND used = FALSE ORDER BY algorithm`, localpart, deviceID)
	if err != nil {
		return nil, fmt.Errorf("select fallback keys: %w", err)
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var alg string
		if err := rows.Scan(&alg); err != nil {
			return nil, fmt.Errorf("select fallback keys: %w", err)
		}
		out = append(out, alg)
	}
	return out, rows.Err()
}

// StoredDeviceKeys is a device's identity keys as /keys/query shows them.
type StoredDeviceKeys struct {
	DeviceID    string
	JSON        []byte
	Ed25519     string
	DisplayName *string
}

// DeviceKeys returns the identity keys of a user's devices (all of them
// when deviceIDs is empty), ordered by device ID, with each device's
// display name. Only devices that still exist are returned.
func (k *Keys) DeviceKeys(ctx context.Context, localpart string, deviceIDs []string) ([]StoredDeviceKeys, error) {
	q := `SELECT k.device_id, k.key_json, k.ed25519, d.display_name FROM device_keys k
		JOIN devices d ON d.localpart = k.localpart AND d.device_id = k.device_id
		WHERE k.localpart = $1`
	args := []any{localpart}
	if len(deviceIDs) > 0 {
		q += ` AND k.device_id IN (` + placeholders(2, len(deviceIDs)) + `)`
		args = append(args, stringArgs(deviceIDs)...)
	}
	rows, err := k.db.R.QueryContext(ctx, q+` ORDER BY k.device_id`, args...)
	if err != nil {
		return nil, fmt.Errorf("select device keys: %w", err)
	}
	defer rows.Close()
	var out []StoredDeviceKeys
	for rows.Next() {
		var (
			d    StoredDeviceKeys
			js   string
			name sql.NullString
		)
		if err := rows.Scan(&d.DeviceID, &js, &d.Ed25519, &name); err != nil {
			return nil, fmt.Errorf("select device keys: %w", err)
		}
		d.JSON = []byte(js)
		if name.Valid {
			d.DisplayName = &name.String
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// DeviceExists reports whether a local device exists.
func (k *Keys) DeviceExists(ctx context.Context, localpart, deviceID string) (bool, error) {
	return deviceExists(ctx, k.db.R, localpart, deviceID)
}

// ClaimRequest asks for one key of a device.
type ClaimRequest struct {
	Localpart string
	DeviceID  string
	Algorithm string
}

// ClaimedKey is a key handed out by Claim.
type ClaimedKey struct {
	ClaimRequest
	KeyID    string
	JSON     []byte
	Fallback bool
}

// maxClaimRetries bounds how often a claim looks for another key after a
// concurrent claim took the one it picked (PostgreSQL, READ COMMITTED).
const maxClaimRetries = 16

// Claim hands out one key per request in one transaction: the device's
// oldest one-time key of the algorithm, deleted as it is returned, so no
// key is ever returned twice; when none is left, the fallback key, marked
// used. Requests that find neither are left out of the result.
func (k *Keys) Claim(ctx context.Context, reqs []ClaimRequest) ([]ClaimedKey, error) {
	var out []ClaimedKey
	err := k.db.Tx(ctx, func(tx *sql.Tx) error {
		out = out[:0]
		for _, r := range reqs {
			key, ok, err := claimOne(ctx, tx, r)
			if err != nil {
				return err
			}
			if ok {
				out = append(out, key)
			}
		}
		return nil
	})
	return out, err
}

func claimOne(ctx context.Context, tx *sql.Tx, r ClaimRequest) (ClaimedKey, bool, error) {
	for range maxClaimRetries {
		var keyID string
		err := tx.QueryRowContext(ctx, `SELECT key_id FROM one_time_keys WHERE localpart = $1 AND device_id = $2 AND algorithm = $3
			ORDER BY batch, key_id LIMIT 1`, r.Localpart, r.DeviceID, r.Algorithm).Scan(&keyID)
		if errors.Is(err, sql.ErrNoRows) {
			break
		}
		if err != nil {
			return ClaimedKey{}, false, fmt.Errorf("select one-time key: %w", err)
		}
		// The DELETE decides: of two concurrent claims that picked the same
		// key, only one deletes the row and gets it back; the other retries.
		var js string
		err = tx.QueryRowContext(ctx, `DELETE FROM one_time_keys WHERE localpart = $1 AND device_id = $2 AND algorithm = $3 AND key_id = $4
			RETURNING key_json`, r.Localpart, r.DeviceID, r.Algorithm, keyID).Scan(&js)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return ClaimedKey{}, false, fmt.Errorf("claim one-time key: %w", err)
		}
		return ClaimedKey{ClaimRequest: r, KeyID: keyID, JSON: []byte(js)}, true, nil
	}
	var keyID, js string
	err := tx.QueryRowContext(ctx, `UPDATE fallback_keys SET used = TRUE WHERE localpart = $1 AND device_id = $2 AND algorithm = $3
		RETURNING key_id, key_json`, r.Localpart, r.DeviceID, r.Algorithm).Scan(&keyID, &js)
	if errors.Is(err, sql.ErrNoRows) {
		return ClaimedKey{}, false, nil
	}
	if err != nil {
		return ClaimedKey{}, false, fmt.Errorf("claim fallback key: %w", err)
	}
	return ClaimedKey{ClaimRequest: r, KeyID: keyID, JSON: []byte(js), Fallback: true}, true, nil
}

// dropDeviceKeys deletes the end-to-end encryption state of devices being
// deleted, inside the caller's transaction: identity, one-time and fallback
// keys, signatures on the device, pending to-device messages and
// to-device transaction IDs. It matches the devices of localpart whose ID
// equals deviceID, or differs from it when except is set. When a deleted
// device had identity keys, other users saw it, so a device-list change is
// recorded. storage/accounts.go calls it wherever devices are deleted.
func dropDeviceKeys(ctx context.Context, tx *sql.Tx, localpart, deviceID string, except bool) error {
	cond := `device_id = $2`
	if except {
		cond = `device_id <> $2`
	}
	var withKeys int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM device_keys WHERE localpart = $1 AND `+cond, localpart, deviceID).Scan(&withKeys); err != nil {
		return fmt.Errorf("count device keys: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM key_signatures WHERE target_localpart = $1 AND target_key_id IN
		(SELECT device_id FROM device_keys WHERE localpart = $1 AND `+cond+`)`, localpart, deviceID); err != nil {
		return fmt.Errorf("delete device signatures: %w", err)
	}
	for _, table := range []string{"device_keys", "one_time_keys", "fallback_keys", "to_device_messages", "to_device_txns"} {
		if _, err := tx.ExecContext(ctx, `DELETE FROM `+table+` WHERE localpart = $1 AND `+cond, localpart, deviceID); err != nil {
			return fmt.Errorf("delete %s: %w", table, err)
		}
	}
	if withKeys > 0 {
		if _, err := recordDeviceListChange(ctx, tx, localpart); err != nil {
			return err
		}
	}
	return nil
}

// CrossSigningKey is one of a user's cross-signing keys.
type CrossSigningKey struct {
	Type      string // master, self_signing or user_signing
	PublicKey string
	JSON      []byte // canonical JSON as uploaded
}

// CrossSigningKeys returns a user's cross-signing keys by type.
func (k *Keys) CrossSigningKeys(ctx context.Context, localpart string) (map[string]CrossSigningKey, error) {
	return crossSigningKeys(ctx, k.db.R, localpart)
}

func crossSigningKeys(ctx context.Context, q queryer, localpart string) (map[string]CrossSigningKey, error) {
	rows, err := q.QueryContext(ctx, `SELECT key_type, public_key, key_json FROM cross_signing_keys WHERE localpart = $1`, localpart)
	if err != nil {
		return nil, fmt.Errorf("select cross-signing keys: %w", err)
	}
	defer rows.Close()
	out := map[string]CrossSigningKey{}
	for rows.Next() {
		var c CrossSigningKey
		var js string
		if err := rows.Scan(&c.Type, &c.PublicKey, &js); err != nil {
			return nil, fmt.Errorf("select cross-signing keys: %w", err)
		}
		c.JSON = []byte(js)
		out[c.Type] = c
	}
	return out, rows.Err()
}

// UploadCrossSigningKeys stores a user's new cross-signing keys in one
// transaction. check sees the stored keys first and validates the upload
// against them (signatures by the master key); it reports whether the
// upload changes anything. An upload that changes keys while a master key
// is stored needs user-interactive auth: without uiaSession it returns
// ErrAuthRequired and stores nothing. A uiaSession given is consumed
// (ErrNotFound if it is gone). A public key equal to one of the user's
// device IDs is a *KeyConflict of Kind "key_id". It returns the
// device-list position recorded (0 when nothing changed).
func (k *Keys) UploadCrossSigningKeys(ctx context.Context, localpart string, keys []CrossSigningKey, uiaSession string,
	check func(stored map[string]CrossSigningKey) (changes bool, err error)) (int64, error) {
	var pos int64
	err := k.db.Tx(ctx, func(tx *sql.Tx) error {
		pos = 0
		stored, err := crossSigningKeys(ctx, tx, localpart)
		if err != nil {
			return err
		}
		changes, err := check(stored)
		if err != nil {
			return err
		}
		if _, hasMaster := stored["master"]; changes && hasMaster && uiaSession == "" {
			return ErrAuthRequired
		}
		if uiaSession != "" {
			if err := consumeUIASession(ctx, tx, uiaSession); err != nil {
				return err
			}
		}
		if !changes {
			return nil
		}
		for _, c := range keys {
			if inUse, err := deviceExists(ctx, tx, localpart, c.PublicKey); err != nil || inUse {
				if err == nil {
					err = &KeyConflict{Kind: "key_id", ID: c.PublicKey}
				}
				return err
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO cross_signing_keys (localpart, key_type, public_key, key_json) VALUES ($1, $2, $3, $4)
				ON CONFLICT (localpart, key_type) DO UPDATE SET public_key = excluded.public_key, key_json = excluded.key_json`,
				localpart, c.Type, c.PublicKey, string(c.JSON)); err != nil {
				return fmt.Errorf("store cross-signing key: %w", err)
			}
		}
		pos, err = recordDeviceListChange(ctx, tx, localpart)
		return err
	})
	return pos, err
}

// Signature is one signature on a local user's key.
type Signature struct {
	TargetLocalpart string
	TargetKeyID     string // device ID or cross-signing public key
	SignerUserID    string
	SignerKeyID     string // e.g. "ed25519:<public key or device ID>"
	Signature       string
}

// AddSignatures stores signatures (replacing one by the same signer key on
// the same target) and records a device-list change for every target
// user, in one transaction. It returns the device-list position.
func (k *Keys) AddSignatures(ctx context.Context, sigs []Signature) (int64, error) {
	if len(sigs) == 0 {
		return 0, nil
	}
	var pos int64
	err := k.db.Tx(ctx, func(tx *sql.Tx) error {
		var targets []string
		for _, s := range sigs {
			if _, err := tx.ExecContext(ctx, `INSERT INTO key_signatures (target_localpart, target_key_id, signer_user_id, signer_key_id, signature)
				VALUES ($1, $2, $3, $4, $5)
				ON CONFLICT (target_localpart, target_key_id, signer_user_id, signer_key_id) DO UPDATE SET signature = excluded.signature`,
				s.TargetLocalpart, s.TargetKeyID, s.SignerUserID, s.SignerKeyID, s.Signature); err != nil {
				return fmt.Errorf("store signature: %w", err)
			}
			targets = append(targets, s.TargetLocalpart)
		}
		var err error
		pos, err = recordDeviceListChange(ctx, tx, targets...)
		return err
	})
	return pos, err
}

// Signatures returns the stored signatures on the given keys of a user
// (all of the user's keys when keyIDs is empty).
func (k *Keys) Signatures(ctx context.Context, localpart string, keyIDs []string) ([]Signature, error) {
	q := `SELECT target_key_id, signer_user_id, signer_key_id, signature FROM key_signatures WHERE target_localpart = $1`
	args := []any{localpart}
	if len(keyIDs) > 0 {
		q += ` AND target_key_id IN (` + placeholders(2, len(keyIDs)) + `)`
		args = append(args, stringArgs(keyIDs)...)
	}
	rows, err := k.db.R.QueryContext(ctx, q+` ORDER BY target_key_id, signer_user_id, signer_key_id`, args...)
	if err != nil {
		return nil, fmt.Errorf("select signatures: %w", err)
	}
	defer rows.Close()
	var out []Signature
	for rows.Next() {
		s := Signature{TargetLocalpart: localpart}
		if err := rows.Scan(&s.TargetKeyID, &s.SignerUserID, &s.SignerKeyID, &s.Signature); err != nil {
			return nil, fmt.Errorf("select signatures: %w", err)
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// DeviceListChanges returns the local users whose device lists changed with
// since < position <= upTo, sorted.
func (k *Keys) DeviceListChanges(ctx context.Context, since, upTo int64) ([]string, error) {
	if upTo <= since {
		return nil, nil
	}
	rows, err := k.db.R.QueryContext(ctx, `SELECT DISTINCT localpart FROM device_list_changes WHERE stream_pos > $1 AND stream_pos <= $2`, since, upTo)
	if err != nil {
		return nil, fmt.Errorf("select device-list changes: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var l string
		if err := rows.Scan(&l); err != nil {
			return nil, fmt.Errorf("select device-list changes: %w", err)
		}
		out = append(out, l)
	}
	sort.Strings(out)
	return out, rows.Err()
}

// MembershipChange is a membership event in a room the viewer has (or had)
// a membership in.
type MembershipChange struct {
	RoomNID int64
	UserID  string // the state key: whose membership changed
}

// MembershipChanges returns the membership events with since < position <=
// upTo in the rooms where userID has a membership row (current or past).
// The window of an incremental sync is short, so this walks the event log
// by its primary key.
func (k *Keys) MembershipChanges(ctx context.Context, userID string, since, upTo int64) ([]MembershipChange, error) {
	if upTo <= since {
		return nil, nil
	}
	rows, err := k.db.R.QueryContext(ctx, `SELECT e.room_nid, e.state_key FROM events e
		WHERE e.event_nid > $1 AND e.event_nid <= $2 AND e.type = 'm.room.member' AND e.state_key IS NOT NULL
		AND e.room_nid IN (SELECT room_nid FROM room_members WHERE user_id = $3)`, since, upTo, userID)
	if err != nil {
		return nil, fmt.Errorf("select membership changes: %w", err)
	}
	defer rows.Close()
	var out []MembershipChange
	for rows.Next() {
		var m MembershipChange
		if err := rows.Scan(&m.RoomNID, &m.UserID); err != nil {
			return nil, fmt.Errorf("select membership changes: %w", err)
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// JoinedMembers returns the users currently joined to any of the rooms.
func (k *Keys) JoinedMembers(ctx context.Context, roomNIDs []int64) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for start := 0; start < len(roomNIDs); start += 500 {
		chunk := roomNIDs[start:min(start+500, len(roomNIDs))]
		rows, err := k.db.R.QueryContext(ctx, `SELECT DISTINCT user_id FROM room_members WHERE membership = 'join' AND room_nid IN (`+
			placeholders(1, len(chunk))+`)`, int64Args(chunk)...)
		if err != nil {
			return nil, fmt.Errorf("select room members: %w", err)
		}
		for rows.Next() {
			var u string
			if err := rows.Scan(&u); err != nil {
				rows.Close()
				return nil, fmt.Errorf("select room members: %w", err)
			}
			if !seen[u] {
				seen[u] = true
				out = append(out, u)
			}
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("select room members: %w", err)
		}
	}
	sort.Strings(out)
	return out, nil
}

// SharingRoom returns which of candidates are joined to at least one room
// userID is joined to.
func (k *Keys) SharingRoom(ctx context.Context, userID string, candidates []string) (map[string]bool, error) {
	out := map[string]bool{}
	for start := 0; start < len(candidates); start += 500 {
		chunk := candidates[start:min(start+500, len(candidates))]
		args := append([]any{userID}, stringArgs(chunk)...)
		rows, err := k.db.R.QueryContext(ctx, `SELECT DISTINCT b.user_id FROM room_members a
			JOIN room_members b ON b.room_nid = a.room_nid
			WHERE a.user_id = $1 AND a.membership = 'join' AND b.membership = 'join' AND b.user_id IN (`+placeholders(2, len(chunk))+`)`, args...)
		if err != nil {
			return nil, fmt.Errorf("select shared rooms: %w", err)
		}
		for rows.Next() {
			var u string
			if err := rows.Scan(&u); err != nil {
				rows.Close()
				return nil, fmt.Errorf("select shared rooms: %w", err)
			}
			out[u] = true
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("select shared rooms: %w", err)
		}
	}
	return out, nil
}

// RoomPeers returns every user joined to a room userID is joined to
// (userID included when joined anywhere): those who track userID's devices.
func (k *Keys) RoomPeers(ctx context.Context, userID string) ([]string, error) {
	rows, err := k.db.R.QueryContext(ctx, `SELECT DISTINCT b.user_id FROM room_members a
		JOIN room_members b ON b.room_nid = a.room_nid
		WHERE a.user_id = $1 AND a.membership = 'join' AND b.membership = 'join'`, userID)
	if err != nil {
		return nil, fmt.Errorf("select room peers: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var u string
		if err := rows.Scan(&u); err != nil {
			return nil, fmt.Errorf("select room peers: %w", err)
		}
		out = append(out, u)
	}
	return out, rows.Err()
}
