package storage

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Accounts is the portable SQL for users, devices, tokens, profiles,
// registration tokens and user-interactive-auth sessions. Reads go to db.R,
// writes to db.W through db.Tx; every composite operation is one transaction.
//
// Tokens are never stored in the clear: callers pass the hash (the account
// service uses hex sha256 of a 256-bit random token), so a database leak
// yields no usable credential.
type Accounts struct {
	db *DB
	// authChanged, when set, hears the localpart of every write that can
	// change what AccessToken returns for that user's tokens (see
	// OnAuthChange). Set once before use, read without locking.
	authChanged func(localpart string)
}

// NewAccounts returns the accounts store on db.
func NewAccounts(db *DB) *Accounts { return &Accounts{db: db} }

// OnAuthChange registers fn, called with the user's localpart after every
// write through this Accounts that can change what AccessToken answers for
// one of that user's tokens: account creation, login (a reused device loses
// its tokens), refresh-token rotation and parent retirement, device deletion
// (single, bulk, all), password change, deactivation. The account service
// uses it to drop cached token lookups.
//
// fn runs after the transaction ended and before the method returns, so the
// change is never acknowledged to its caller while a stale lookup could
// still be served. It also runs when the transaction failed: a commit error
// can be ambiguous (the change may have landed), and dropping too much is
// always safe. Only writes through this same *Accounts are seen, so the
// process must use one Accounts per database (the account service owns it).
//
// Writes that do not change a lookup's answer do not call fn: TouchDevice
// (the caller updates its cached last-seen values itself), device renames,
// profiles, registration tokens and UIA sessions. Any new write to users,
// devices, access_tokens or refresh_tokens must go through authChange.
func (a *Accounts) OnAuthChange(fn func(localpart string)) { a.authChanged = fn }

// authChange reports a (possibly) committed change to localpart's
// authentication state; see OnAuthChange.
func (a *Accounts) authChange(localpart string) {
	if a.authChanged != nil && localpart != "" {
		a.authChanged(localpart)
	}
}

// User is one local account.
type User struct {
	Localpart    string
	PasswordHash string // "" when no password can match
	Admin        bool
	Deactivated  bool
	CreatedTS    int64 // ms since the epoch
}

// Device is one login session of a user.
type Device struct {
	Localpart   string
	DeviceID    string
	DisplayName *string // nil: never named
	LastSeenIP  *string
	LastSeenTS  *int64
	CreatedTS   int64
}

// NewTokens are the hashes of freshly minted tokens for one device.
type NewTokens struct {
	AccessHash  string
	RefreshHash string // "" when the client did not ask for refresh tokens
	ExpiresTS   int64  // access token expiry in ms; 0 = never
}

// NewDevice describes the device and tokens a login or registration creates.
// When the device already exists its display name is kept and its previous
// tokens are revoked, as the spec requires when a client reuses a device_id.
type NewDevice struct {
	DeviceID    string
	DisplayName *string
	IP          string
	TS          int64
	Tokens      NewTokens
}

// TokenInfo is what an access token resolves to.
type TokenInfo struct {
	Localpart string
	DeviceID  string
	ExpiresTS int64 // 0 = never
	// RefreshHash is the refresh token issued with this access token; a
	// still-present one means an expired access token can be refreshed.
	RefreshHash string
	// ParentRefresh is the refresh token that this token's pair replaced; it
	// is revoked the first time this access token is used.
	ParentRefresh string
	Admin         bool
	LastSeenIP    string
	LastSeenTS    int64
}

// RegistrationToken gates m.login.registration_token.
type RegistrationToken struct {
	Token       string
	UsesAllowed *int // nil: unlimited
	Pending     int
	Completed   int
	ExpiryTS    int64 // 0 = never
	CreatedTS   int64
}

// UIASession is one user-interactive-auth session.
type UIASession struct {
	ID        string
	Kind      string // the operation it authorises, e.g. "register"
	Localpart string // the user it is bound to, "" until known
	Completed []string
	RegToken  string // a registration token this session holds pending
	CreatedTS int64
	ExpiresTS int64
}

// NewAccount is everything account creation writes in one transaction.
type NewAccount struct {
	Localpart    string
	PasswordHash string
	Admin        bool
	CreatedTS    int64
	// Device, when set, logs the new account in.
	Device *NewDevice
	// Profile fields to set initially (e.g. displayname), values as JSON.
	Profile map[string]json.RawMessage
	// UIASession, when set, is deleted; the registration token it holds is
	// converted from pending to completed.
	UIASession string
}

// CreateAccount creates a user (ErrConflict when the localpart exists, even if
// deactivated), optionally its first device and tokens, its initial profile,
// and consumes the UIA session, in one transaction.
func (a *Accounts) CreateAccount(ctx context.Context, na NewAccount) error {
	// A brand-new user has no cached tokens, but reporting it keeps the rule
	// simple: every write to users/devices/tokens reports.
	defer a.authChange(na.Localpart)
	return a.db.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO users (localpart, password_hash, is_admin, deactivated, created_ts) VALUES ($1, $2, $3, FALSE, $4)`,
			na.Localpart, na.PasswordHash, na.Admin, na.CreatedTS); err != nil {
			return fmt.Errorf("insert user: %w", mapError(err))
		}
		for k, v := range na.Profile {
			if _, err := tx.ExecContext(ctx,
				`INSERT INTO profile_fields (localpart, field, value) VALUES ($1, $2, $3)`,
				na.Localpart, k, string(v)); err != nil {
				return fmt.Errorf("insert profile field: %w", mapError(err))
			}
		}
		if na.Device != nil {
			if err := upsertDevice(ctx, tx, na.Localpart, *na.Device); err != nil {
				return err
			}
		}
		if na.UIASession != "" {
			if err := consumeUIASession(ctx, tx, na.UIASession); err != nil {
				return err
			}
		}
		return nil
	})
}

// User returns the account with this localpart, or ErrNotFound.
func (a *Accounts) User(ctx context.Context, localpart string) (User, error) {
	var u User
	err := a.db.R.QueryRowContext(ctx,
		`SELECT localpart, password_hash, is_admin, deactivated, created_ts FROM users WHERE localpart = $1`,
		localpart).Scan(&u.Localpart, &u.PasswordHash, &u.Admin, &u.Deactivated, &u.CreatedTS)
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, ErrNotFound
	}
	if err != nil {
		return User{}, fmt.Errorf("select user: %w", err)
	}
	return u, nil
}

// Login creates or reuses a device for an active user and issues its tokens
// in one transaction. It returns ErrNotFound if the user does not exist or
// has been deactivated (a deactivation racing a login wins).
func (a *Accounts) Login(ctx context.Context, localpart string, d NewDevice) error {
	// A reused device_id revokes that device's previous tokens.
	defer a.authChange(localpart)
	return a.db.Tx(ctx, func(tx *sql.Tx) error {
		if err := requireActive(ctx, tx, localpart); err != nil {
			return err
		}
		return upsertDevice(ctx, tx, localpart, d)
	})
}

func requireActive(ctx context.Context, tx *sql.Tx, localpart string) error {
	var deactivated bool
	err := tx.QueryRowContext(ctx, `SELECT deactivated FROM users WHERE localpart = $1`, localpart).Scan(&deactivated)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && deactivated) {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("select user: %w", err)
	}
	return nil
}

// upsertDevice creates the device (or keeps an existing one, revoking its
// tokens) and inserts the new tokens.
func upsertDevice(ctx context.Context, tx *sql.Tx, localpart string, d NewDevice) error {
	res, err := tx.ExecContext(ctx,
		`INSERT INTO devices (localpart, device_id, display_name, last_seen_ip, last_seen_ts, created_ts)
		 VALUES ($1, $2, $3, $4, $5, $5)
		 ON CONFLICT (localpart, device_id) DO NOTHING`,
		localpart, d.DeviceID, d.DisplayName, d.IP, d.TS)
	if err != nil {
		return fmt.Errorf("insert device: %w", mapError(err))
	}
	if n, _ := res.RowsAffected(); n == 0 {
		// Reused device: the spec says its previous tokens are invalidated.
		if err := revokeDeviceTokens(ctx, tx, localpart, d.DeviceID); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx,
			`UPDATE devices SET last_seen_ip = $3, last_seen_ts = $4 WHERE localpart = $1 AND device_id = $2`,
			localpart, d.DeviceID, d.IP, d.TS); err != nil {
			return fmt.Errorf("update device: %w", err)
		}
	}
	return insertTokens(ctx, tx, localpart, d.DeviceID, d.Tokens, "", d.TS)
}

func insertTokens(ctx context.Context, tx *sql.Tx, localpart, deviceID string, t NewTokens, parent string, now int64) error {
	var refresh, parentArg any
	if t.RefreshHash != "" {
		refresh = t.RefreshHash
		if parent != "" {
			parentArg = parent
		}
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO refresh_tokens (token_hash, localpart, device_id, parent_hash, created_ts) VALUES ($1, $2, $3, $4, $5)`,
			t.RefreshHash, localpart, deviceID, parentArg, now); err != nil {
			return fmt.Errorf("insert refresh token: %w", mapError(err))
		}
	}
	var expires any
	if t.ExpiresTS != 0 {
		expires = t.ExpiresTS
	}
	if _, err := tx.ExecContext(ctx,
		`INSERT INTO access_tokens (token_hash, localpart, device_id, refresh_hash, expires_ts, created_ts) VALUES ($1, $2, $3, $4, $5, $6)`,
		t.AccessHash, localpart, deviceID, refresh, expires, now); err != nil {
		return fmt.Errorf("insert access token: %w", mapError(err))
	}
	return nil
}

func revokeDeviceTokens(ctx context.Context, tx *sql.Tx, localpart, deviceID string) error {
	if _, err := tx.ExecContext(ctx, `DELETE FROM access_tokens WHERE localpart = $1 AND device_id = $2`, localpart, deviceID); err != nil {
		return fmt.Errorf("delete access tokens: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM refresh_tokens WHERE localpart = $1 AND device_id = $2`, localpart, deviceID); err != nil {
		return fmt.Errorf("delete refresh tokens: %w", err)
	}
	return nil
}

// AccessToken resolves an access token hash for an active user, or
// ErrNotFound (unknown, revoked, or the user was deactivated). Expiry is the
// caller's decision: it needs ExpiresTS and RefreshHash to answer soft_logout.
func (a *Accounts) AccessToken(ctx context.Context, hash string) (TokenInfo, error) {
	var (
		ti                  TokenInfo
		expires, seenTS     sql.NullInt64
		refresh, parent, ip sql.NullString
		deactivated         bool
	)
	err := a.db.R.QueryRowContext(ctx,
		`SELECT t.localpart, t.device_id, t.expires_ts, r.token_hash, r.parent_hash,
		        u.is_admin, u.deactivated, d.last_seen_ip, d.last_seen_ts
		 FROM access_tokens t
		 JOIN users u ON u.localpart = t.localpart
		 JOIN devices d ON d.localpart = t.localpart AND d.device_id = t.device_id
		 LEFT JOIN refresh_tokens r ON r.token_hash = t.refresh_hash
		 WHERE t.token_hash = $1`, hash).Scan(
		&ti.Localpart, &ti.DeviceID, &expires, &refresh, &parent, &ti.Admin, &deactivated, &ip, &seenTS)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && deactivated) {
		return TokenInfo{}, ErrNotFound
	}
	if err != nil {
		return TokenInfo{}, fmt.Errorf("select access token: %w", err)
	}
	ti.ExpiresTS, ti.RefreshHash, ti.ParentRefresh = expires.Int64, refresh.String, parent.String
	ti.LastSeenIP, ti.LastSeenTS = ip.String, seenTS.Int64
	return ti, nil
}

// RetireParentRefresh revokes the refresh token that refreshHash replaced:
// the client has demonstrably received the new pair.
func (a *Accounts) RetireParentRefresh(ctx context.Context, refreshHash string) error {
	var localpart string
	// The parent's access token dies; the owner is read in the transaction
	// so the report names the right user whatever the caller believes.
	defer func() { a.authChange(localpart) }()
	return a.db.Tx(ctx, func(tx *sql.Tx) error {
		var err error
		localpart, err = retireParent(ctx, tx, refreshHash)
		return err
	})
}

// retireParent revokes refreshHash's parent pair and returns the owner of
// refreshHash ("" when it does not exist).
func retireParent(ctx context.Context, tx *sql.Tx, refreshHash string) (string, error) {
	var (
		localpart string
		parent    sql.NullString
	)
	err := tx.QueryRowContext(ctx, `SELECT localpart, parent_hash FROM refresh_tokens WHERE token_hash = $1`, refreshHash).Scan(&localpart, &parent)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err == nil && !parent.Valid {
		return localpart, nil
	}
	if err != nil {
		return localpart, fmt.Errorf("select refresh parent: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM access_tokens WHERE refresh_hash = $1`, parent.String); err != nil {
		return localpart, fmt.Errorf("delete parent access tokens: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM refresh_tokens WHERE token_hash = $1`, parent.String); err != nil {
		return localpart, fmt.Errorf("delete parent refresh token: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE refresh_tokens SET parent_hash = NULL WHERE token_hash = $1`, refreshHash); err != nil {
		return localpart, fmt.Errorf("clear refresh parent: %w", err)
	}
	return localpart, nil
}

// Refresh rotates a refresh token in one transaction: the access token issued
// with it is revoked, pairs previously minted from it (never used) are
// revoked, and the new pair is stored with oldHash as its parent, so oldHash
// stays valid until the new pair is used. Using oldHash also proves the
// client got it, so oldHash's own parent is revoked. It returns the device's
// owner and ID, or ErrNotFound for an unknown token or a deactivated user.
func (a *Accounts) Refresh(ctx context.Context, oldHash string, t NewTokens, now int64) (localpart, deviceID string, err error) {
	// The old access token (and never-used children) die. localpart is set
	// once the token is found, so an unknown token reports nothing.
	defer func() { a.authChange(localpart) }()
	err = a.db.Tx(ctx, func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx,
			`SELECT r.localpart, r.device_id FROM refresh_tokens r JOIN users u ON u.localpart = r.localpart
			 WHERE r.token_hash = $1 AND u.deactivated = FALSE`, oldHash).Scan(&localpart, &deviceID)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("select refresh token: %w", err)
		}
		if _, err := retireParent(ctx, tx, oldHash); err != nil {
			return err
		}
		// Children minted from oldHash earlier that the client never used.
		if _, err := tx.ExecContext(ctx,
			`DELETE FROM access_tokens WHERE refresh_hash IN (SELECT token_hash FROM refresh_tokens WHERE parent_hash = $1)`, oldHash); err != nil {
			return fmt.Errorf("delete superseded access tokens: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM refresh_tokens WHERE parent_hash = $1`, oldHash); err != nil {
			return fmt.Errorf("delete superseded refresh tokens: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM access_tokens WHERE refresh_hash = $1`, oldHash); err != nil {
			return fmt.Errorf("delete old access token: %w", err)
		}
		return insertTokens(ctx, tx, localpart, deviceID, t, oldHash, now)
	})
	return localpart, deviceID, err
}

// TouchDevice records where and when a device was last seen.
func (a *Accounts) TouchDevice(ctx context.Context, localpart, deviceID, ip string, ts int64) error {
	return a.db.Tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx,
			`UPDATE devices SET last_seen_ip = $3, last_seen_ts = $4 WHERE localpart = $1 AND device_id = $2`,
			localpart, deviceID, ip, ts)
		if err != nil {
			return fmt.Errorf("touch device: %w", err)
		}
		return nil
	})
}

const deviceColumns = `localpart, device_id, display_name, last_seen_ip, last_seen_ts, created_ts`

func scanDevice(row interface{ Scan(...any) error }) (Device, error) {
	var (
		d    Device
		name sql.NullString
		ip   sql.NullString
		ts   sql.NullInt64
	)
	if err := row.Scan(&d.Localpart, &d.DeviceID, &name, &ip, &ts, &d.CreatedTS); err != nil {
		return Device{}, err
	}
	if name.Valid {
		d.DisplayName = &name.String
	}
	if ip.Valid && ip.String != "" {
		d.LastSeenIP = &ip.String
	}
	if ts.Valid {
		d.LastSeenTS = &ts.Int64
	}
	return d, nil
}

// Devices lists a user's devices ordered by device ID.
func (a *Accounts) Devices(ctx context.Context, localpart string) ([]Device, error) {
	rows, err := a.db.R.QueryContext(ctx,
		`SELECT `+deviceColumns+` FROM devices WHERE localpart = $1 ORDER BY device_id`, localpart)
	if err != nil {
		return nil, fmt.Errorf("select devices: %w", err)
	}
	defer rows.Close()
	var out []Device
	for rows.Next() {
		d, err := scanDevice(rows)
		if err != nil {
			return nil, fmt.Errorf("scan device: %w", err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("select devices: %w", err)
	}
	return out, nil
}

// Device returns one device of a user, or ErrNotFound.
func (a *Accounts) Device(ctx context.Context, localpart, deviceID string) (Device, error) {
	d, err := scanDevice(a.db.R.QueryRowContext(ctx,
		`SELECT `+deviceColumns+` FROM devices WHERE localpart = $1 AND device_id = $2`, localpart, deviceID))
	if errors.Is(err, sql.ErrNoRows) {
		return Device{}, ErrNotFound
	}
	if err != nil {
		return Device{}, fmt.Errorf("select device: %w", err)
	}
	return d, nil
}

// SetDeviceDisplayName renames a device, or returns ErrNotFound.
func (a *Accounts) SetDeviceDisplayName(ctx context.Context, localpart, deviceID, name string) error {
	return a.db.Tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx,
			`UPDATE devices SET display_name = $3 WHERE localpart = $1 AND device_id = $2`, localpart, deviceID, name)
		if err != nil {
			return fmt.Errorf("rename device: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrNotFound
		}
		return nil
	})
}

// DeleteDevices deletes the listed devices of a user with their tokens (a
// device that does not exist is skipped), and the UIA session that authorised
// it when uiaSession is set, in one transaction.
func (a *Accounts) DeleteDevices(ctx context.Context, localpart string, deviceIDs []string, uiaSession string) error {
	defer a.authChange(localpart)
	return a.db.Tx(ctx, func(tx *sql.Tx) error {
		for _, id := range deviceIDs {
			if err := deleteDevice(ctx, tx, localpart, id); err != nil {
				return err
			}
		}
		if uiaSession != "" {
			return consumeUIASession(ctx, tx, uiaSession)
		}
		return nil
	})
}

// deleteDevice removes a device; its tokens go with it. Tokens are deleted
// explicitly rather than relying on ON DELETE CASCADE alone, so correctness
// never depends on SQLite's per-connection foreign_keys pragma.
func deleteDevice(ctx context.Context, tx *sql.Tx, localpart, deviceID string) error {
	if err := revokeDeviceTokens(ctx, tx, localpart, deviceID); err != nil {
		return err
	}
	if err := dropDeviceKeys(ctx, tx, localpart, deviceID, false); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM devices WHERE localpart = $1 AND device_id = $2`, localpart, deviceID); err != nil {
		return fmt.Errorf("delete device: %w", err)
	}
	return nil
}

// DeleteDevicesExcept deletes every device of the user except keep ("" keeps
// none), with their tokens.
func (a *Accounts) DeleteDevicesExcept(ctx context.Context, localpart, keep string) error {
	defer a.authChange(localpart)
	return a.db.Tx(ctx, func(tx *sql.Tx) error {
		return deleteDevicesExcept(ctx, tx, localpart, keep)
	})
}

func deleteDevicesExcept(ctx context.Context, tx *sql.Tx, localpart, keep string) error {
	if err := dropDeviceKeys(ctx, tx, localpart, keep, true); err != nil {
		return err
	}
	for _, q := range []string{
		`DELETE FROM access_tokens WHERE localpart = $1 AND device_id <> $2`,
		`DELETE FROM refresh_tokens WHERE localpart = $1 AND device_id <> $2`,
		`DELETE FROM devices WHERE localpart = $1 AND device_id <> $2`,
	} {
		if _, err := tx.ExecContext(ctx, q, localpart, keep); err != nil {
			return fmt.Errorf("delete devices: %w", err)
		}
	}
	return nil
}

// SetPassword replaces the password hash of an active user; when logout is
// true it also deletes every other device (all but keepDevice) and their
// tokens; uiaSession, when set, is consumed. One transaction. ErrNotFound if
// the user does not exist or is deactivated.
func (a *Accounts) SetPassword(ctx context.Context, localpart, hash string, logout bool, keepDevice, uiaSession string) error {
	// With logout, other devices' tokens die; without, nothing cached
	// changes, but reporting anyway keeps the rule simple.
	defer a.authChange(localpart)
	return a.db.Tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx,
			`UPDATE users SET password_hash = $2 WHERE localpart = $1 AND deactivated = FALSE`, localpart, hash)
		if err != nil {
			return fmt.Errorf("update password: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrNotFound
		}
		if logout {
			if err := deleteDevicesExcept(ctx, tx, localpart, keepDevice); err != nil {
				return err
			}
		}
		if uiaSession != "" {
			return consumeUIASession(ctx, tx, uiaSession)
		}
		return nil
	})
}

// Deactivate marks the user deactivated, wipes the password hash, deletes all
// devices and tokens, clears the profile and drops the user's UIA sessions,
// in one transaction. The users row stays so the localpart can never be
// registered again. ErrNotFound if the user does not exist.
func (a *Accounts) Deactivate(ctx context.Context, localpart string) error {
	defer a.authChange(localpart)
	return a.db.Tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx,
			`UPDATE users SET deactivated = TRUE, password_hash = '' WHERE localpart = $1`, localpart)
		if err != nil {
			return fmt.Errorf("deactivate user: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrNotFound
		}
		if err := deleteDevicesExcept(ctx, tx, localpart, ""); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM profile_fields WHERE localpart = $1`, localpart); err != nil {
			return fmt.Errorf("clear profile: %w", err)
		}
		ids, err := queryStrings(ctx, tx, `SELECT session_id FROM uia_sessions WHERE localpart = $1`, localpart)
		if err != nil {
			return err
		}
		for _, id := range ids {
			if err := releaseUIASession(ctx, tx, id); err != nil {
				return err
			}
		}
		return nil
	})
}

func queryStrings(ctx context.Context, tx queryer, q string, args ...any) ([]string, error) {
	rows, err := tx.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("query: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, fmt.Errorf("scan: %w", err)
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// Profile returns a user's profile fields (JSON values), or ErrNotFound if
// the user does not exist.
func (a *Accounts) Profile(ctx context.Context, localpart string) (map[string]json.RawMessage, error) {
	var one int
	err := a.db.R.QueryRowContext(ctx, `SELECT 1 FROM users WHERE localpart = $1`, localpart).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("select user: %w", err)
	}
	rows, err := a.db.R.QueryContext(ctx, `SELECT field, value FROM profile_fields WHERE localpart = $1`, localpart)
	if err != nil {
		return nil, fmt.Errorf("select profile: %w", err)
	}
	defer rows.Close()
	return scanProfile(rows)
}

func scanProfile(rows *sql.Rows) (map[string]json.RawMessage, error) {
	out := map[string]json.RawMessage{}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return nil, fmt.Errorf("scan profile: %w", err)
		}
		out[k] = json.RawMessage(v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("select profile: %w", err)
	}
	return out, nil
}

// UpdateProfile sets (value non-nil) or deletes (value nil) one profile field
// of an active user. check sees the whole resulting profile before anything
// is written and may veto it (e.g. the 64 KiB limit); its error is returned
// as is. One transaction; ErrNotFound if the user is missing or deactivated.
func (a *Accounts) UpdateProfile(ctx context.Context, localpart, field string, value json.RawMessage, check func(map[string]json.RawMessage) error) error {
	return a.db.Tx(ctx, func(tx *sql.Tx) error {
		if err := requireActive(ctx, tx, localpart); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `SELECT field, value FROM profile_fields WHERE localpart = $1`, localpart)
		if err != nil {
			return fmt.Errorf("select profile: %w", err)
		}
		profile, err := scanProfile(rows)
		rows.Close()
		if err != nil {
			return err
		}
		if value == nil {
			delete(profile, field)
		} else {
			profile[field] = value
		}
		if check != nil {
			if err := check(profile); err != nil {
				return err
			}
		}
		if value == nil {
			_, err = tx.ExecContext(ctx, `DELETE FROM profile_fields WHERE localpart = $1 AND field = $2`, localpart, field)
		} else {
			_, err = tx.ExecContext(ctx,
				`INSERT INTO profile_fields (localpart, field, value) VALUES ($1, $2, $3)
				 ON CONFLICT (localpart, field) DO UPDATE SET value = excluded.value`, localpart, field, string(value))
		}
		if err != nil {
			return fmt.Errorf("write profile field: %w", err)
		}
		return nil
	})
}

// CreateRegistrationToken stores a new token, or ErrConflict if it exists.
func (a *Accounts) CreateRegistrationToken(ctx context.Context, t RegistrationToken) error {
	return a.db.Tx(ctx, func(tx *sql.Tx) error {
		var expiry any
		if t.ExpiryTS != 0 {
			expiry = t.ExpiryTS
		}
		_, err := tx.ExecContext(ctx,
			`INSERT INTO registration_tokens (token, uses_allowed, pending, completed, expiry_ts, created_ts) VALUES ($1, $2, 0, 0, $3, $4)`,
			t.Token, t.UsesAllowed, expiry, t.CreatedTS)
		if err != nil {
			return fmt.Errorf("insert registration token: %w", mapError(err))
		}
		return nil
	})
}

// RegistrationToken returns a token's state, or ErrNotFound.
func (a *Accounts) RegistrationToken(ctx context.Context, token string) (RegistrationToken, error) {
	var (
		t      RegistrationToken
		uses   sql.NullInt64
		expiry sql.NullInt64
	)
	err := a.db.R.QueryRowContext(ctx,
		`SELECT token, uses_allowed, pending, completed, expiry_ts, created_ts FROM registration_tokens WHERE token = $1`,
		token).Scan(&t.Token, &uses, &t.Pending, &t.Completed, &expiry, &t.CreatedTS)
	if errors.Is(err, sql.ErrNoRows) {
		return RegistrationToken{}, ErrNotFound
	}
	if err != nil {
		return RegistrationToken{}, fmt.Errorf("select registration token: %w", err)
	}
	if uses.Valid {
		n := int(uses.Int64)
		t.UsesAllowed = &n
	}
	t.ExpiryTS = expiry.Int64
	return t, nil
}

// CreateUIASession stores a new session and, in the same transaction, purges
// sessions that expired before now (releasing registration tokens they held),
// so abandoned sessions never accumulate.
func (a *Accounts) CreateUIASession(ctx context.Context, s UIASession, now int64) error {
	return a.db.Tx(ctx, func(tx *sql.Tx) error {
		expired, err := queryStrings(ctx, tx, `SELECT session_id FROM uia_sessions WHERE expires_ts <= $1`, now)
		if err != nil {
			return err
		}
		for _, id := range expired {
			if err := releaseUIASession(ctx, tx, id); err != nil {
				return err
			}
		}
		_, err = tx.ExecContext(ctx,
			`INSERT INTO uia_sessions (session_id, kind, localpart, completed, created_ts, expires_ts) VALUES ($1, $2, $3, $4, $5, $6)`,
			s.ID, s.Kind, s.Localpart, strings.Join(s.Completed, " "), s.CreatedTS, s.ExpiresTS)
		if err != nil {
			return fmt.Errorf("insert uia session: %w", mapError(err))
		}
		return nil
	})
}

// UIASession returns a session, or ErrNotFound.
func (a *Accounts) UIASession(ctx context.Context, id string) (UIASession, error) {
	var (
		s         UIASession
		completed string
		regToken  sql.NullString
	)
	err := a.db.R.QueryRowContext(ctx,
		`SELECT session_id, kind, localpart, completed, reg_token, created_ts, expires_ts FROM uia_sessions WHERE session_id = $1`,
		id).Scan(&s.ID, &s.Kind, &s.Localpart, &completed, &regToken, &s.CreatedTS, &s.ExpiresTS)
	if errors.Is(err, sql.ErrNoRows) {
		return UIASession{}, ErrNotFound
	}
	if err != nil {
		return UIASession{}, fmt.Errorf("select uia session: %w", err)
	}
	s.Completed = strings.Fields(completed)
	s.RegToken = regToken.String
	return s, nil
}

// CompleteUIAStage records a completed stage and the user the session is now
// bound to. ErrNotFound if the session is gone.
func (a *Accounts) CompleteUIAStage(ctx context.Context, id, localpart string, completed []string) error {
	return a.db.Tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx,
			`UPDATE uia_sessions SET completed = $2, localpart = $3 WHERE session_id = $1`,
			id, strings.Join(completed, " "), localpart)
		if err != nil {
			return fmt.Errorf("update uia session: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrNotFound
		}
		return nil
	})
}

// HoldRegistrationToken completes the registration-token stage of a session:
// in one transaction it checks the token is usable at now (exists, not
// expired, pending+completed below uses_allowed), counts it pending and ties
// it to the session. ErrNotFound if the token is unusable or the session gone.
// A session that already holds a token keeps it (idempotent retry).
func (a *Accounts) HoldRegistrationToken(ctx context.Context, id, token string, completed []string, now int64) error {
	return a.db.Tx(ctx, func(tx *sql.Tx) error {
		var held sql.NullString
		err := tx.QueryRowContext(ctx, `SELECT reg_token FROM uia_sessions WHERE session_id = $1`, id).Scan(&held)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("select uia session: %w", err)
		}
		if !held.Valid {
			res, err := tx.ExecContext(ctx,
				`UPDATE registration_tokens SET pending = pending + 1
				 WHERE token = $1 AND (uses_allowed IS NULL OR pending + completed < uses_allowed)
				   AND (expiry_ts IS NULL OR expiry_ts > $2)`, token, now)
			if err != nil {
				return fmt.Errorf("hold registration token: %w", err)
			}
			if n, _ := res.RowsAffected(); n == 0 {
				return ErrNotFound
			}
		} else if held.String != token {
			return ErrNotFound
		}
		if _, err := tx.ExecContext(ctx,
			`UPDATE uia_sessions SET reg_token = $2, completed = $3 WHERE session_id = $1`,
			id, token, strings.Join(completed, " ")); err != nil {
			return fmt.Errorf("update uia session: %w", err)
		}
		return nil
	})
}

// DeleteUIASession drops a session, releasing a registration token it held.
func (a *Accounts) DeleteUIASession(ctx context.Context, id string) error {
	return a.db.Tx(ctx, func(tx *sql.Tx) error {
		return releaseUIASession(ctx, tx, id)
	})
}

// releaseUIASession deletes an abandoned session; its registration token use
// goes back from pending to available.
func releaseUIASession(ctx context.Context, tx *sql.Tx, id string) error {
	return endUIASession(ctx, tx, id, false, `UPDATE registration_tokens SET pending = pending - 1 WHERE token = $1 AND pending > 0`)
}

// consumeUIASession deletes a session whose operation succeeded; its
// registration token use moves from pending to completed. A session that is
// gone (expired and purged, or consumed by a concurrent request) is
// ErrNotFound: the operation it authorised must not happen twice or unpaid.
func consumeUIASession(ctx context.Context, tx *sql.Tx, id string) error {
	return endUIASession(ctx, tx, id, true,
		`UPDATE registration_tokens SET pending = CASE WHEN pending > 0 THEN pending - 1 ELSE 0 END, completed = completed + 1 WHERE token = $1`)
}

func endUIASession(ctx context.Context, tx *sql.Tx, id string, mustExist bool, tokenUpdate string) error {
	var held sql.NullString
	err := tx.QueryRowContext(ctx, `SELECT reg_token FROM uia_sessions WHERE session_id = $1`, id).Scan(&held)
	if errors.Is(err, sql.ErrNoRows) {
		if mustExist {
			return ErrNotFound
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("select uia session: %w", err)
	}
	if held.Valid {
		if _, err := tx.ExecContext(ctx, tokenUpdate, held.String); err != nil {
			return fmt.Errorf("update registration token: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM uia_sessions WHERE session_id = $1`, id); err != nil {
		return fmt.Errorf("delete uia session: %w", err)
	}
	return nil
}
