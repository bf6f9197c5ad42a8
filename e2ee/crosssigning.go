package e2ee

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"sort"
	"strings"

	"myelin/internal/apierr"
	"myelin/storage"
)

// Cross-signing (spec: "Cross-signing"): a user's master key signs their
// self-signing key (which signs their devices) and user-signing key (which
// signs other users' master keys).

// Cross-signing key types, as stored and as named in "usage".
const (
	usageMaster      = "master"
	usageSelfSigning = "self_signing"
	usageUserSigning = "user_signing"
)

// CrossSigningUpload is the body of /keys/device_signing/upload, keys raw.
type CrossSigningUpload struct {
	MasterKey      json.RawMessage `json:"master_key"`
	SelfSigningKey json.RawMessage `json:"self_signing_key"`
	UserSigningKey json.RawMessage `json:"user_signing_key"`
}

// Reauth performs user-interactive auth for the current request and
// returns the completed session, or the error to answer with (the 401 that
// asks for auth). The session is consumed together with the upload.
type Reauth func(ctx context.Context) (session string, err error)

// ReauthOp names the operation a cross-signing UIA session is bound to.
const ReauthOp = "device_signing"

// crossKey is a validated cross-signing key.
type crossKey struct {
	storage.CrossSigningKey
	obj object
}

// parseCrossSigningKey checks a cross-signing key object: the caller's
// user ID, the expected usage, exactly one ed25519 key named by itself.
func parseCrossSigningKey(raw json.RawMessage, userID, usage string) (*crossKey, error) {
	field := usage + "_key"
	o, err := parseObject(raw)
	if err != nil {
		return nil, apierr.BadJSON(field + " must be a JSON object")
	}
	if u, ok := stringMember(o, "user_id"); !ok || u != userID {
		return nil, apierr.InvalidParam(field + ".user_id must be the user of the access token")
	}
	var usages []string
	if err := json.Unmarshal(o["usage"], &usages); err != nil || usages == nil {
		return nil, apierr.BadJSON(field + ".usage must be an array of strings")
	}
	found := false
	for _, u := range usages {
		found = found || u == usage
	}
	if !found {
		return nil, apierr.InvalidParam(field + ".usage must include " + usage)
	}
	var keys map[string]string
	if err := json.Unmarshal(o["keys"], &keys); err != nil || keys == nil {
		return nil, apierr.BadJSON(field + ".keys must map key IDs to strings")
	}
	if len(keys) != 1 {
		return nil, apierr.InvalidParam(field + ".keys must hold exactly one key")
	}
	var pub string
	for id, key := range keys {
		alg, name, _ := strings.Cut(id, ":")
		if alg != algEd25519 || name != key || !validPublicKey(key) {
			return nil, apierr.InvalidParam(field + ".keys must be one ed25519:<key> entry whose value is that 32-byte key")
		}
		pub = key
	}
	if _, err := signaturesOf(o); err != nil {
		return nil, apierr.BadJSON(field + "." + err.Error())
	}
	delete(o, "unsigned")
	js, err := encodeObject(o)
	if err != nil {
		return nil, apierr.BadJSON(field + " could not be encoded")
	}
	return &crossKey{CrossSigningKey: storage.CrossSigningKey{Type: usage, PublicKey: pub, JSON: js}, obj: o}, nil
}

// UploadCrossSigning stores the caller's cross-signing keys. The
// self-signing and user-signing keys must be signed by the master key (the
// one uploaded with them, or the stored one). Replacing stored keys needs
// user-interactive auth (reauth); the first upload, and a repeat of the
// stored keys, do not (spec v1.11).
func (s *Service) UploadCrossSigning(ctx context.Context, userID string, req CrossSigningUpload, reauth Reauth) error {
	local, ok := s.localpart(userID)
	if !ok {
		return errNotLocal
	}
	var keys []*crossKey
	for _, part := range []struct {
		raw   json.RawMessage
		usage string
	}{{req.MasterKey, usageMaster}, {req.SelfSigningKey, usageSelfSigning}, {req.UserSigningKey, usageUserSigning}} {
		if !present(part.raw) {
			continue
		}
		k, err := parseCrossSigningKey(part.raw, userID, part.usage)
		if err != nil {
			return err
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil
	}
	plain := make([]storage.CrossSigningKey, len(keys))
	for i, k := range keys {
		plain[i] = k.CrossSigningKey
	}
	check := func(stored map[string]storage.CrossSigningKey) (bool, error) {
		master := ""
		if m, ok := stored[usageMaster]; ok {
			master = m.PublicKey
		}
		for _, k := range keys {
			if k.Type == usageMaster {
				master = k.PublicKey
			}
		}
		changes := false
		for _, k := range keys {
			if k.Type != usageMaster {
				if master == "" {
					return false, apierr.MissingParam("No master signing key is available to check " + k.Type + "_key")
				}
				sigs, _ := signaturesOf(k.obj)
				if has, good := verify(k.obj, sigs, userID, algEd25519+":"+master, master); !has || !good {
					return false, apierr.New(400, "M_INVALID_SIGNATURE", k.Type+"_key must be signed by the master key")
				}
			}
			if cur, ok := stored[k.Type]; !ok || !bytes.Equal(cur.JSON, k.JSON) {
				changes = true
			}
		}
		return changes, nil
	}
	pos, err := s.store.UploadCrossSigningKeys(ctx, local, plain, "", check)
	if errors.Is(err, storage.ErrAuthRequired) {
		var session string
		if session, err = reauth(ctx); err != nil {
			return err
		}
		pos, err = s.store.UploadCrossSigningKeys(ctx, local, plain, session, check)
		if errors.Is(err, storage.ErrNotFound) {
			return apierr.New(400, "M_UNKNOWN", "Unknown or expired user-interactive auth session")
		}
	}
	var kc *storage.KeyConflict
	if errors.As(err, &kc) {
		return apierr.Forbidden("Key ID in use: a cross-signing key equals one of your device IDs")
	}
	if _, ok := apierr.As(err); ok {
		return err
	}
	if err != nil {
		return internal("upload cross-signing keys", err)
	}
	s.deviceListChanged(ctx, pos, local)
	return nil
}

// UploadSignatures stores signatures on keys (/keys/signatures/upload):
// on the caller's own devices (by their self-signing key), on the caller's
// master key (by one of their devices), and on other users' master keys
// (by the caller's user-signing key). Each signed object must equal the
// stored key apart from its signatures. Signatures that cannot be
// accepted are reported per key in the failures map; the others are
// stored, all in one transaction.
func (s *Service) UploadSignatures(ctx context.Context, caller Device, req map[string]map[string]json.RawMessage) (map[string]map[string]any, error) {
	failures := map[string]map[string]any{}
	fail := func(user, key string, e *apierr.Error) {
		if failures[user] == nil {
			failures[user] = map[string]any{}
		}
		failures[user][key] = map[string]string{"errcode": e.Code, "error": e.Msg}
	}
	callerLocal, ok := s.localpart(caller.UserID)
	if !ok {
		return nil, errNotLocal
	}
	own, err := s.store.CrossSigningKeys(ctx, callerLocal)
	if err != nil {
		return nil, internal("load cross-signing keys", err)
	}
	users := make([]string, 0, len(req))
	for u := range req {
		users = append(users, u)
	}
	sort.Strings(users)
	var accepted []storage.Signature
	var targets []string
	for _, userID := range users {
		if !validUserID(userID) {
			return nil, apierr.InvalidParam("Signatures must be keyed by user IDs")
		}
		local, ok := s.localpart(userID)
		for keyID, raw := range req[userID] {
			if !ok {
				fail(userID, keyID, apierr.New(400, "M_UNRECOGNIZED", "Keys of other servers cannot be signed here yet"))
				continue
			}
			sigs, e, err := s.checkSignedKey(ctx, caller, own, userID, local, keyID, raw)
			if err != nil {
				return nil, err
			}
			if e != nil {
				fail(userID, keyID, e)
				continue
			}
			accepted = append(accepted, sigs...)
			targets = append(targets, local)
		}
	}
	pos, err := s.store.AddSignatures(ctx, accepted)
	if err != nil {
		return nil, internal("store signatures", err)
	}
	s.deviceListChanged(ctx, pos, targets...)
	return failures, nil
}

// checkSignedKey validates one signed object of /keys/signatures/upload
// and returns the caller's new signatures on it, or why they are refused
// (e), or an internal error.
func (s *Service) checkSignedKey(ctx context.Context, caller Device, own map[string]storage.CrossSigningKey,
	userID, local, keyID string, raw json.RawMessage) (sigs []storage.Signature, e *apierr.Error, err error) {
	o, perr := parseObject(raw)
	if perr != nil {
		return nil, apierr.BadJSON("The signed key must be a JSON object"), nil
	}
	all, perr := signaturesOf(o)
	if perr != nil {
		return nil, apierr.BadJSON(perr.Error()), nil
	}
	mine := all[caller.UserID]
	if len(mine) == 0 {
		return nil, apierr.InvalidParam("No signature by the caller"), nil
	}
	// The stored key the object must match, and the keys allowed to sign it.
	var stored object
	signers := map[string]string{} // signer key ID → public key
	selfSigning, userSigning := own[usageSelfSigning].PublicKey, own[usageUserSigning].PublicKey
	cs, err := s.store.CrossSigningKeys(ctx, local)
	if err != nil {
		return nil, nil, internal("load keys", err)
	}
	switch {
	case keyID != "" && cs[usageMaster].PublicKey == keyID:
		if err := json.Unmarshal(cs[usageMaster].JSON, &stored); err != nil {
			return nil, nil, internal("load keys", err)
		}
		if userID == caller.UserID {
			// A user's own devices sign their master key.
			dks, err := s.store.DeviceKeys(ctx, local, nil)
			if err != nil {
				return nil, nil, internal("load keys", err)
			}
			for _, dk := range dks {
				signers[algEd25519+":"+dk.DeviceID] = dk.Ed25519
			}
		} else if userSigning != "" {
			signers[algEd25519+":"+userSigning] = userSigning
		}
	case userID == caller.UserID:
		dks, err := s.store.DeviceKeys(ctx, local, []string{keyID})
		if err != nil {
			return nil, nil, internal("load keys", err)
		}
		if len(dks) != 1 {
			return nil, apierr.NotFound("Unknown key"), nil
		}
		if err := json.Unmarshal(dks[0].JSON, &stored); err != nil {
			return nil, nil, internal("load keys", err)
		}
		if selfSigning != "" {
			signers[algEd25519+":"+selfSigning] = selfSigning
		}
	default:
		return nil, apierr.NotFound("Unknown key"), nil
	}
	a, errA := signedBytes(o)
	b, errB := signedBytes(stored)
	if errA != nil || errB != nil || !bytes.Equal(a, b) {
		return nil, apierr.InvalidParam("The signed object does not match the stored key"), nil
	}
	var out []storage.Signature
	for sigKeyID := range mine {
		pub, allowed := signers[sigKeyID]
		if !allowed {
			continue // an existing signature carried along, or a key not entitled to sign this
		}
		if _, good := verify(o, all, caller.UserID, sigKeyID, pub); !good {
			return nil, apierr.New(400, "M_INVALID_SIGNATURE", "Invalid signature"), nil
		}
		out = append(out, storage.Signature{TargetLocalpart: local, TargetKeyID: keyID, SignerUserID: caller.UserID,
			SignerKeyID: sigKeyID, Signature: mine[sigKeyID]})
	}
	if len(out) == 0 {
		return nil, apierr.New(400, "M_INVALID_SIGNATURE", "No signature by a key that may sign this key"), nil
	}
	return out, nil, nil
}
