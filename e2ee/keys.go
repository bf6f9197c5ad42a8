package e2ee

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"myelin/internal/apierr"
	"myelin/storage"
)

// Key algorithms (spec: "Key algorithms").
const (
	algEd25519          = "ed25519"
	algCurve25519       = "curve25519"
	algSignedCurve25519 = "signed_curve25519"
)

// Limits on one /keys/upload. Clients upload a few dozen one-time keys at
// a time (libolm and vodozemac keep at most 50 unpublished).
const (
	maxOneTimeKeysPerUpload = 500
	maxAlgorithms           = 32
	maxIdentityKeys         = 16
)

// UploadRequest is the body of /keys/upload with its parts left raw: their
// exact bytes are what the signatures cover.
type UploadRequest struct {
	DeviceKeys   json.RawMessage            `json:"device_keys"`
	OneTimeKeys  map[string]json.RawMessage `json:"one_time_keys"`
	FallbackKeys map[string]json.RawMessage `json:"fallback_keys"`
}

// Device identifies the authenticated device a request comes from.
type Device struct {
	UserID   string
	DeviceID string
}

func present(raw json.RawMessage) bool {
	t := strings.TrimSpace(string(raw))
	return t != "" && t != "null"
}

// Upload publishes a device's keys: identity keys (once; other keys for the
// same device are refused), one-time keys and fallback keys. Everything is
// validated first (shape, the caller's user and device IDs, key sizes, and
// signatures by the device's ed25519 key); a request with one bad key
// stores nothing. It returns the device's unclaimed one-time key counts.
func (s *Service) Upload(ctx context.Context, d Device, req UploadRequest) (map[string]int, error) {
	local, ok := s.localpart(d.UserID)
	if !ok {
		return nil, errNotLocal
	}
	u := storage.KeyUpload{Localpart: local, DeviceID: d.DeviceID, TS: s.nowMS()}
	var signingKey string
	if present(req.DeviceKeys) {
		dk, err := validateDeviceKeys(req.DeviceKeys, d)
		if err != nil {
			return nil, err
		}
		u.DeviceKeys = dk
		signingKey = dk.Ed25519
	}
	if len(req.OneTimeKeys) > maxOneTimeKeysPerUpload {
		return nil, apierr.InvalidParam(fmt.Sprintf("At most %d one-time keys per upload", maxOneTimeKeysPerUpload))
	}
	if signingKey == "" && (len(req.OneTimeKeys) > 0 || len(req.FallbackKeys) > 0) {
		stored, err := s.store.DeviceKeys(ctx, local, []string{d.DeviceID})
		if err != nil {
			return nil, internal("load device keys", err)
		}
		if len(stored) == 1 {
			signingKey = stored[0].Ed25519
		}
	}
	var err error
	if u.OneTimeKeys, err = validateOneTimeKeys(req.OneTimeKeys, d, signingKey, "one_time_keys"); err != nil {
		return nil, err
	}
	if u.FallbackKeys, err = validateOneTimeKeys(req.FallbackKeys, d, signingKey, "fallback_keys"); err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, k := range u.FallbackKeys {
		if seen[k.Algorithm] {
			return nil, apierr.InvalidParam("At most one fallback key per algorithm")
		}
		seen[k.Algorithm] = true
	}
	counts, pos, err := s.store.Upload(ctx, u)
	var kc *storage.KeyConflict
	switch {
	case errors.As(err, &kc) && kc.Kind == "device_keys":
		return nil, apierr.InvalidParam("This device already has different identity keys; log in as a new device to use new keys")
	case errors.As(err, &kc):
		return nil, apierr.InvalidParam("One-time key " + kc.ID + " was already uploaded with different content")
	case errors.Is(err, storage.ErrNotFound):
		return nil, apierr.UnknownToken(false)
	case err != nil:
		return nil, internal("upload keys", err)
	}
	s.deviceListChanged(ctx, pos, local)
	return counts, nil
}

// validateDeviceKeys checks a device_keys object and returns it ready to
// store: canonical, without "unsigned", with its fingerprint and signing
// key.
func validateDeviceKeys(raw json.RawMessage, d Device) (*storage.DeviceKeys, error) {
	o, err := parseObject(raw)
	if err != nil {
		return nil, apierr.BadJSON("device_keys must be a JSON object")
	}
	if u, ok := stringMember(o, "user_id"); !ok || u != d.UserID {
		return nil, apierr.InvalidParam("device_keys.user_id must be the user of the access token")
	}
	if id, ok := stringMember(o, "device_id"); !ok || id != d.DeviceID {
		return nil, apierr.InvalidParam("device_keys.device_id must be the device of the access token")
	}
	var algs []string
	if err := json.Unmarshal(o["algorithms"], &algs); err != nil || algs == nil {
		return nil, apierr.BadJSON("device_keys.algorithms must be an array of strings")
	}
	if len(algs) == 0 || len(algs) > maxAlgorithms {
		return nil, apierr.InvalidParam(fmt.Sprintf("device_keys.algorithms must list 1 to %d algorithms", maxAlgorithms))
	}
	for _, a := range algs {
		if !validID(a) {
			return nil, apierr.InvalidParam("device_keys.algorithms has an invalid algorithm name")
		}
	}
	var keys map[string]string
	if err := json.Unmarshal(o["keys"], &keys); err != nil || keys == nil {
		return nil, apierr.BadJSON("device_keys.keys must map key IDs to strings")
	}
	if len(keys) > maxIdentityKeys {
		return nil, apierr.InvalidParam("device_keys.keys has too many keys")
	}
	for id, key := range keys {
		alg, dev, ok := strings.Cut(id, ":")
		if !ok || dev != d.DeviceID || !validID(alg) || !validID(key) {
			return nil, apierr.InvalidParam("device_keys.keys must be named <algorithm>:<device_id>")
		}
		if (alg == algEd25519 || alg == algCurve25519) && !validPublicKey(key) {
			return nil, apierr.InvalidParam("device_keys." + alg + " key must be 32 bytes of unpadded base64")
		}
	}
	ed, hasEd := keys[algEd25519+":"+d.DeviceID]
	if _, hasCurve := keys[algCurve25519+":"+d.DeviceID]; !hasEd || !hasCurve {
		return nil, apierr.InvalidParam("device_keys.keys must hold the device's ed25519 and curve25519 keys")
	}
	sigs, err := signaturesOf(o)
	if err != nil {
		return nil, apierr.BadJSON("device_keys." + err.Error())
	}
	if has, good := verify(o, sigs, d.UserID, algEd25519+":"+d.DeviceID, ed); !has {
		return nil, apierr.InvalidParam("device_keys must be signed by the device's ed25519 key")
	} else if !good {
		return nil, apierr.InvalidParam("device_keys has an invalid signature")
	}
	delete(o, "unsigned")
	js, err := encodeObject(o)
	if err != nil {
		return nil, apierr.BadJSON("device_keys could not be encoded")
	}
	identity, err := signedBytes(o)
	if err != nil {
		return nil, apierr.BadJSON("device_keys could not be encoded")
	}
	sum := sha256.Sum256(identity)
	return &storage.DeviceKeys{JSON: js, Fingerprint: hex.EncodeToString(sum[:]), Ed25519: ed}, nil
}

func validPublicKey(s string) bool {
	_, ok := publicKey(s)
	return ok
}

// validateOneTimeKeys checks one-time or fallback keys: names
// "<algorithm>:<key_id>"; signed_curve25519 keys are objects with a 32-byte
// key signed by the device (verified when its signing key is known),
// curve25519 keys are bare 32-byte keys. Other algorithms are refused:
// nothing could use them. Keys come back sorted by name.
func validateOneTimeKeys(in map[string]json.RawMessage, d Device, signingKey, field string) ([]storage.OneTimeKey, error) {
	names := make([]string, 0, len(in))
	for n := range in {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]storage.OneTimeKey, 0, len(in))
	for _, name := range names {
		raw := in[name]
		alg, keyID, ok := strings.Cut(name, ":")
		if !ok || !validID(keyID) {
			return nil, apierr.InvalidParam(field + " must be named <algorithm>:<key_id>")
		}
		switch alg {
		case algCurve25519:
			var key string
			if err := json.Unmarshal(raw, &key); err != nil {
				return nil, apierr.BadJSON(field + ": a curve25519 key must be a string")
			}
			if !validPublicKey(key) {
				return nil, apierr.InvalidParam(field + ": a curve25519 key must be 32 bytes of unpadded base64")
			}
			out = append(out, storage.OneTimeKey{Algorithm: alg, KeyID: keyID, JSON: appendString(nil, key)})
		case algSignedCurve25519:
			o, err := parseObject(raw)
			if err != nil {
				return nil, apierr.BadJSON(field + ": a signed_curve25519 key must be a JSON object")
			}
			key, ok := stringMember(o, "key")
			if !ok {
				return nil, apierr.BadJSON(field + ": a signed_curve25519 key needs a key string")
			}
			if !validPublicKey(key) {
				return nil, apierr.InvalidParam(field + ": a signed_curve25519 key must be 32 bytes of unpadded base64")
			}
			if fb, ok := o["fallback"]; ok {
				var b bool
				if err := json.Unmarshal(fb, &b); err != nil {
					return nil, apierr.BadJSON(field + ": fallback must be a boolean")
				}
			}
			sigs, err := signaturesOf(o)
			if err != nil {
				return nil, apierr.BadJSON(field + ": " + err.Error())
			}
			keyName := algEd25519 + ":" + d.DeviceID
			if signingKey == "" {
				// The device's signing key is not known yet, so the
				// signature can only be checked for presence and shape.
				sig, has := sigs[d.UserID][keyName]
				if b, err := decodeBase64(sig); !has || err != nil || len(b) != 64 {
					return nil, apierr.InvalidParam(field + ": a signed_curve25519 key must be signed by the device")
				}
			} else if has, good := verify(o, sigs, d.UserID, keyName, signingKey); !has {
				return nil, apierr.InvalidParam(field + ": a signed_curve25519 key must be signed by the device")
			} else if !good {
				return nil, apierr.InvalidParam(field + ": a signed_curve25519 key has an invalid signature")
			}
			delete(o, "unsigned")
			js, err := encodeObject(o)
			if err != nil {
				return nil, apierr.BadJSON(field + ": key could not be encoded")
			}
			out = append(out, storage.OneTimeKey{Algorithm: alg, KeyID: keyID, JSON: js})
		default:
			return nil, apierr.InvalidParam(field + ": unsupported key algorithm")
		}
	}
	return out, nil
}

// QueryResult is the body of the /keys/query answer.
type QueryResult struct {
	DeviceKeys      map[string]map[string]json.RawMessage `json:"device_keys"`
	MasterKeys      map[string]json.RawMessage            `json:"master_keys"`
	SelfSigningKeys map[string]json.RawMessage            `json:"self_signing_keys"`
	UserSigningKeys map[string]json.RawMessage            `json:"user_signing_keys"`
	Failures        map[string]any                        `json:"failures"`
}

// maxQueryUsers bounds one /keys/query or /keys/claim.
const maxQueryUsers = 1000

// federationFailure is what failures records for a server Myelin cannot
// reach: there is no federation yet.
var federationFailure = map[string]any{"status": 503, "message": "Federation is not available on this server"}

// Query returns the identity and cross-signing keys of users' devices
// (all devices when a user's list is empty), with the signatures the
// requester may see: everyone sees device and self signatures; a
// signature made with a user-signing key only its signer sees.
func (s *Service) Query(ctx context.Context, requester string, users map[string][]string) (*QueryResult, error) {
	if len(users) > maxQueryUsers {
		return nil, apierr.InvalidParam(fmt.Sprintf("At most %d users per request", maxQueryUsers))
	}
	res := &QueryResult{
		DeviceKeys: map[string]map[string]json.RawMessage{}, MasterKeys: map[string]json.RawMessage{},
		SelfSigningKeys: map[string]json.RawMessage{}, UserSigningKeys: map[string]json.RawMessage{}, Failures: map[string]any{},
	}
	for userID, devices := range users {
		if !validUserID(userID) {
			return nil, apierr.InvalidParam("device_keys must be keyed by user IDs")
		}
		for _, d := range devices {
			if !validID(d) {
				return nil, apierr.InvalidParam("Invalid device ID")
			}
		}
		local, ok := s.localpart(userID)
		if !ok {
			res.Failures[serverOf(userID)] = federationFailure
			continue
		}
		if err := s.queryUser(ctx, requester, userID, local, devices, res); err != nil {
			return nil, err
		}
	}
	return res, nil
}

func (s *Service) queryUser(ctx context.Context, requester, userID, local string, devices []string, res *QueryResult) error {
	dks, err := s.store.DeviceKeys(ctx, local, devices)
	if err != nil {
		return internal("load device keys", err)
	}
	sigs, err := s.store.Signatures(ctx, local, nil)
	if err != nil {
		return internal("load signatures", err)
	}
	byTarget := map[string][]storage.Signature{}
	for _, sg := range sigs {
		byTarget[sg.TargetKeyID] = append(byTarget[sg.TargetKeyID], sg)
	}
	devs := map[string]json.RawMessage{}
	for _, dk := range dks {
		js, err := withSignatures(dk.JSON, byTarget[dk.DeviceID], func(storage.Signature) bool { return true }, dk.DisplayName)
		if err != nil {
			return internal("merge signatures", err)
		}
		devs[dk.DeviceID] = js
	}
	res.DeviceKeys[userID] = devs
	cs, err := s.store.CrossSigningKeys(ctx, local)
	if err != nil {
		return internal("load cross-signing keys", err)
	}
	if m, ok := cs["master"]; ok {
		visible := func(sg storage.Signature) bool { return sg.SignerUserID == userID || sg.SignerUserID == requester }
		js, err := withSignatures(m.JSON, byTarget[m.PublicKey], visible, nil)
		if err != nil {
			return internal("merge signatures", err)
		}
		res.MasterKeys[userID] = js
	}
	if k, ok := cs["self_signing"]; ok {
		res.SelfSigningKeys[userID] = k.JSON
	}
	if k, ok := cs["user_signing"]; ok && userID == requester {
		res.UserSigningKeys[userID] = k.JSON
	}
	return nil
}

// withSignatures merges the visible stored signatures into a key object
// and, for a device, adds unsigned.device_display_name.
func withSignatures(js []byte, sigs []storage.Signature, visible func(storage.Signature) bool, displayName *string) (json.RawMessage, error) {
	var shown []storage.Signature
	for _, sg := range sigs {
		if visible(sg) {
			shown = append(shown, sg)
		}
	}
	if len(shown) == 0 && displayName == nil {
		return js, nil
	}
	var o object
	if err := json.Unmarshal(js, &o); err != nil {
		return nil, err
	}
	if len(shown) > 0 {
		all, err := signaturesOf(o)
		if err != nil {
			return nil, err
		}
		for _, sg := range shown {
			if all[sg.SignerUserID] == nil {
				all[sg.SignerUserID] = map[string]string{}
			}
			all[sg.SignerUserID][sg.SignerKeyID] = sg.Signature
		}
		if o["signatures"], err = json.Marshal(all); err != nil {
			return nil, err
		}
	}
	if displayName != nil {
		u, err := json.Marshal(map[string]string{"device_display_name": *displayName})
		if err != nil {
			return nil, err
		}
		o["unsigned"] = u
	}
	return json.Marshal(o)
}

// ClaimResult is the body of the /keys/claim answer.
type ClaimResult struct {
	OneTimeKeys map[string]map[string]map[string]json.RawMessage `json:"one_time_keys"`
	Failures    map[string]any                                   `json:"failures"`
}

// Claim hands out one key per requested device and algorithm: a one-time
// key, each exactly once, or the device's fallback key when none is left.
// Devices with neither are left out, as the spec says.
func (s *Service) Claim(ctx context.Context, req map[string]map[string]string) (*ClaimResult, error) {
	res := &ClaimResult{OneTimeKeys: map[string]map[string]map[string]json.RawMessage{}, Failures: map[string]any{}}
	var claims []storage.ClaimRequest
	total := 0
	for userID, devices := range req {
		if !validUserID(userID) {
			return nil, apierr.InvalidParam("one_time_keys must be keyed by user IDs")
		}
		total += len(devices)
		if total > maxQueryUsers {
			return nil, apierr.InvalidParam(fmt.Sprintf("At most %d keys per request", maxQueryUsers))
		}
		for dev, alg := range devices {
			if !validID(dev) || !validID(alg) {
				return nil, apierr.InvalidParam("Invalid device ID or algorithm")
			}
		}
		local, ok := s.localpart(userID)
		if !ok {
			res.Failures[serverOf(userID)] = federationFailure
			continue
		}
		for dev, alg := range devices {
			claims = append(claims, storage.ClaimRequest{Localpart: local, DeviceID: dev, Algorithm: alg})
		}
	}
	// A stable order makes concurrent claims of several keys take their
	// row locks in the same order.
	sort.Slice(claims, func(i, j int) bool {
		a, b := claims[i], claims[j]
		if a.Localpart != b.Localpart {
			return a.Localpart < b.Localpart
		}
		return a.DeviceID < b.DeviceID
	})
	got, err := s.store.Claim(ctx, claims)
	if err != nil {
		return nil, internal("claim keys", err)
	}
	for _, k := range got {
		u := s.userID(k.Localpart)
		if res.OneTimeKeys[u] == nil {
			res.OneTimeKeys[u] = map[string]map[string]json.RawMessage{}
		}
		res.OneTimeKeys[u][k.DeviceID] = map[string]json.RawMessage{k.Algorithm + ":" + k.KeyID: k.JSON}
	}
	return res, nil
}

// OneTimeKeyCounts is syncapi's KeyCounter: the device's unclaimed
// one-time keys per algorithm.
func (s *Service) OneTimeKeyCounts(ctx context.Context, userID, deviceID string) (map[string]int, error) {
	local, ok := s.localpart(userID)
	if !ok {
		return map[string]int{}, nil
	}
	counts, err := s.store.OneTimeKeyCounts(ctx, local, deviceID)
	if err != nil {
		return nil, internal("count one-time keys", err)
	}
	return counts, nil
}

// UnusedFallbackKeyTypes is syncapi's KeyCounter: the algorithms of the
// device's fallback keys no claim has used.
func (s *Service) UnusedFallbackKeyTypes(ctx context.Context, userID, deviceID string) ([]string, error) {
	local, ok := s.localpart(userID)
	if !ok {
		return []string{}, nil
	}
	types, err := s.store.UnusedFallbackKeyTypes(ctx, local, deviceID)
	if err != nil {
		return nil, internal("list fallback keys", err)
	}
	return types, nil
}
