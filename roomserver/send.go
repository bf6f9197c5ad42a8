package roomserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	gmsl "github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"myelin/internal/apierr"
	"myelin/storage"
)

// SendRequest sends a message or state event.
type SendRequest struct {
	RoomID string
	// Sender is the authenticated user ID; DeviceID its device ("" for
	// server-internal senders, which then cannot use TxnID).
	Sender   string
	DeviceID string
	// TxnID makes the request idempotent per (sender, device, endpoint):
	// a retry, even after a restart, returns the first event's ID.
	TxnID    string
	Type     string
	StateKey *string // non-nil sends a state event
	Content  json.RawMessage
}

// Send builds, authorises and stores an event and returns its ID once it
// is committed. Errors are *apierr.Error for client mistakes: M_BAD_JSON,
// M_TOO_LARGE, M_FORBIDDEN, M_NOT_FOUND (unknown room), M_BAD_ALIAS and
// M_INVALID_PARAM (m.room.canonical_alias).
func (s *Service) Send(ctx context.Context, req SendRequest) (string, error) {
	if err := checkUserID(req.Sender); err != nil {
		return "", err
	}
	if err := checkContent(req.Type, req.StateKey, req.Content); err != nil {
		return "", err
	}
	if req.Type == spec.MRoomRedaction && req.StateKey == nil {
		var c struct {
			Redacts string `json:"redacts"`
			Reason  string `json:"reason"`
		}
		if err := json.Unmarshal(req.Content, &c); err != nil || c.Redacts == "" {
			return "", apierr.BadJSON("m.room.redaction needs content.redacts; use /redact")
		}
		return s.redact(ctx, RedactRequest{RoomID: req.RoomID, Sender: req.Sender, DeviceID: req.DeviceID, TxnID: req.TxnID,
			EventID: c.Redacts}, "send "+req.Type, req.Content)
	}
	if req.Type == spec.MRoomCanonicalAlias && req.StateKey != nil && *req.StateKey == "" {
		if err := s.checkCanonicalAlias(ctx, req.RoomID, req.Content); err != nil {
			return "", err
		}
	}
	var key *txnKey
	if req.TxnID != "" {
		scope := "send " + req.Type
		if req.StateKey != nil {
			scope = "state " + req.Type + "\x00" + *req.StateKey
		}
		key = &txnKey{user: req.Sender, device: req.DeviceID, scope: scope, txn: req.TxnID}
	}
	rel := relationOf(req.Type, req.StateKey, req.Content)
	ids, err := s.do(ctx, req.RoomID, func(ctx context.Context, t *stateTxn) (outcome, error) {
		if t.base == nil {
			return outcome{}, notFound("room")
		}
		if out, done, err := t.txnLookup(ctx, key); done || err != nil {
			return out, err
		}
		if req.StateKey != nil {
			if id := t.unchangedState(req.Sender, req.Type, *req.StateKey, req.Content); id != "" {
				return outcome{eventIDs: []string{id}}, nil
			}
		}
		be := &builtEvent{txn: t.storedTxn(key)}
		ev, err := t.build(proto{sender: req.Sender, typ: req.Type, stateKey: req.StateKey, content: req.Content}, be)
		if err != nil {
			return outcome{}, err
		}
		// After authorisation, so a sender who may not send here learns
		// nothing about the parent; a refusal discards the overlay.
		if be.relation, err = s.checkRelation(ctx, t.nid, req.Sender, req.Type, rel); err != nil {
			return outcome{}, err
		}
		return outcome{eventIDs: []string{ev.EventID()}, txn: key}, nil
	})
	if err != nil {
		return "", err
	}
	return ids[0], nil
}

// txnLookup resolves a retried transaction: an in-flight duplicate is
// waited for, a committed one answered from the database. done reports
// that out is the answer.
func (t *stateTxn) txnLookup(ctx context.Context, key *txnKey) (out outcome, done bool, err error) {
	if key == nil {
		return out, false, nil
	}
	if p := t.worker.pendingFor(*key); p != nil {
		return outcome{wait: p}, true, nil
	}
	if !t.svc.txns.mayContain(*key, t.nid) {
		// New: remember it before the write carrying it is submitted.
		t.svc.txns.add(*key, t.nid)
		return out, false, nil
	}
	id, err := t.svc.store.TxnEvent(ctx, key.user, key.device, t.nid, key.scope, key.txn)
	if err == nil {
		return outcome{eventIDs: []string{id}}, true, nil
	}
	if !errors.Is(err, storage.ErrNotFound) {
		return out, false, err
	}
	return out, false, nil
}

func (t *stateTxn) storedTxn(key *txnKey) *storage.Txn {
	if key == nil {
		return nil
	}
	return &storage.Txn{UserID: key.user, DeviceID: key.device, Scope: key.scope, TxnID: key.txn, CreatedTS: t.svc.cfg.Now().UnixMilli()}
}

// unchangedState returns the ID of the current state event for the key if
// the same sender already set exactly this content, so a repeated PUT does
// not grow the room (as other homeservers do).
func (t *stateTxn) unchangedState(sender, typ, key string, content json.RawMessage) string {
	cur, err := t.get(stateKey{typ, key})
	if err != nil || cur == nil || string(cur.SenderID()) != sender {
		return ""
	}
	canon, err := gmsl.CanonicalJSON(content)
	if err != nil || string(canon) != string(cur.Content()) {
		return ""
	}
	return cur.EventID()
}

// RedactRequest redacts an event.
type RedactRequest struct {
	RoomID   string
	Sender   string
	DeviceID string
	TxnID    string
	EventID  string // the event to redact
	Reason   string
}

// Redact sends an m.room.redaction and applies it: the target's stored
// JSON is replaced by its redacted form in the same transaction. The sender
// must have sent the target or have the redact power level.
func (s *Service) Redact(ctx context.Context, req RedactRequest) (string, error) {
	if err := checkUserID(req.Sender); err != nil {
		return "", err
	}
	content := map[string]any{}
	if req.Reason != "" {
		content["reason"] = req.Reason
	}
	raw, err := json.Marshal(content)
	if err != nil {
		return "", err
	}
	return s.redact(ctx, req, "redact "+req.EventID, raw)
}

func (s *Service) redact(ctx context.Context, req RedactRequest, scope string, content json.RawMessage) (string, error) {
	if !strings.HasPrefix(req.EventID, "$") || len(req.EventID) > maxIDBytes {
		return "", apierr.NotFound("event not found")
	}
	var key *txnKey
	if req.TxnID != "" {
		key = &txnKey{user: req.Sender, device: req.DeviceID, scope: scope, txn: req.TxnID}
	}
	ids, err := s.do(ctx, req.RoomID, func(ctx context.Context, t *stateTxn) (outcome, error) {
		if t.base == nil {
			return outcome{}, notFound("room")
		}
		if out, done, err := t.txnLookup(ctx, key); done || err != nil {
			return out, err
		}
		target, err := s.store.EventByID(ctx, req.EventID)
		if errors.Is(err, storage.ErrNotFound) || (err == nil && target.RoomNID != t.nid) {
			return outcome{}, notFound("event")
		}
		if err != nil {
			return outcome{}, err
		}
		if target.Sender != req.Sender {
			l, err := loadLevels(t)
			if err != nil {
				return outcome{}, fmt.Errorf("read power levels: %w", err)
			}
			if l.user(req.Sender) < l.content.Redact {
				return outcome{}, apierr.Forbidden("insufficient power level to redact other users' events")
			}
		}
		c := content
		if redactsInContent(t.ver.Version()) {
			var m map[string]json.RawMessage
			if err := json.Unmarshal(content, &m); err != nil {
				return outcome{}, apierr.BadJSON("content must be an object")
			}
			m["redacts"], _ = json.Marshal(req.EventID)
			if c, err = json.Marshal(m); err != nil {
				return outcome{}, err
			}
		}
		redactedJSON, err := t.ver.RedactEventJSON(target.JSON)
		if err != nil {
			return outcome{}, fmt.Errorf("redact %s: %w", target.EventID, err)
		}
		if redactedJSON, err = gmsl.CanonicalJSON(redactedJSON); err != nil {
			return outcome{}, fmt.Errorf("redact %s: %w", target.EventID, err)
		}
		be := &builtEvent{txn: t.storedTxn(key), redaction: &storage.Redaction{TargetNID: target.NID, RedactedJSON: redactedJSON}}
		ev, err := t.build(proto{sender: req.Sender, typ: spec.MRoomRedaction, content: c, redacts: req.EventID}, be)
		if err != nil {
			return outcome{}, err
		}
		// A redacted state event stays in the state in its redacted form.
		if target.StateKey != nil {
			k := stateKey{target.Type, *target.StateKey}
			if e := t.lookup(k); e != nil && e.eventID == target.EventID {
				pdu, err := t.ver.NewEventFromTrustedJSONWithEventID(target.EventID, redactedJSON, true)
				if err != nil {
					return outcome{}, fmt.Errorf("parse redacted %s: %w", target.EventID, err)
				}
				t.replaceEntry(k, pdu)
			}
		}
		return outcome{eventIDs: []string{ev.EventID()}, txn: key}, nil
	})
	if err != nil {
		return "", err
	}
	return ids[0], nil
}

// checkCanonicalAlias validates m.room.canonical_alias content: aliases
// must be well formed (M_INVALID_PARAM) and, when local, exist and point to
// this room (M_BAD_ALIAS). Remote aliases cannot be checked without
// federation and are accepted.
func (s *Service) checkCanonicalAlias(ctx context.Context, roomID string, content json.RawMessage) error {
	var c struct {
		Alias      *string  `json:"alias"`
		AltAliases []string `json:"alt_aliases"`
	}
	if err := json.Unmarshal(content, &c); err != nil {
		return apierr.InvalidParam("alias and alt_aliases must be strings")
	}
	aliases := append([]string(nil), c.AltAliases...)
	if c.Alias != nil {
		aliases = append(aliases, *c.Alias)
	}
	for _, a := range aliases {
		if err := checkAlias(a); err != nil {
			return err
		}
		if domainOf(a) != s.cfg.ServerName {
			continue
		}
		row, err := s.store.AliasByName(ctx, a)
		if errors.Is(err, storage.ErrNotFound) || (err == nil && row.RoomID != roomID) {
			return apierr.New(400, "M_BAD_ALIAS", "an alias does not point to this room")
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// checkAlias validates a room alias's syntax (appendices#room-aliases).
func checkAlias(a string) error {
	if len(a) > maxIDBytes || !strings.HasPrefix(a, "#") {
		return apierr.InvalidParam("invalid room alias")
	}
	local, domain, ok := strings.Cut(a[1:], ":")
	if !ok || local == "" || strings.ContainsAny(local, " \t\n\x00") {
		return apierr.InvalidParam("invalid room alias")
	}
	if _, _, ok := spec.ParseAndValidateServerName(spec.ServerName(domain)); !ok {
		return apierr.InvalidParam("invalid room alias")
	}
	return nil
}

// checkUserID validates a user ID (historical localparts allowed, as in
// existing rooms).
func checkUserID(id string) error {
	if _, err := spec.NewUserID(id, true); err != nil {
		return apierr.InvalidParam("invalid user ID")
	}
	return nil
}
