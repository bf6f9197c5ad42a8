package e2ee

import (
	"bytes"
	"context"
	"encoding/json"
	"sort"

	"myelin/internal/apierr"
	"myelin/storage"
)

// Send-to-device messaging (spec: "Send-to-Device messaging"): messages
// wait in the recipient device's inbox until a /sync of that device proves
// it received them, so they survive restarts and lost responses, and a
// retried /sendToDevice (same device, same transaction ID) queues nothing
// twice.

// SendToDevice queues messages (user ID → device ID or "*" → content) of
// one type from the caller's device. Messages to users of other servers
// are dropped: NOTSPEC: they should go over federation, which Myelin does
// not have yet; refusing the whole request instead would break encryption
// in rooms with remote members for the local recipients too.
func (s *Service) SendToDevice(ctx context.Context, sender Device, eventType, txnID string, messages map[string]map[string]json.RawMessage) error {
	senderLocal, ok := s.localpart(sender.UserID)
	if !ok {
		return errNotLocal
	}
	if !validID(eventType) {
		return apierr.InvalidParam("Invalid event type")
	}
	if !validID(txnID) {
		return apierr.InvalidParam("Invalid transaction ID")
	}
	req := storage.ToDeviceSend{
		SenderLocalpart: senderLocal, SenderDevice: sender.DeviceID, TxnID: txnID, Sender: sender.UserID, Type: eventType,
		TS: s.nowMS(), PruneBefore: s.now().Add(-s.txnTTL).UnixMilli(),
	}
	users := make([]string, 0, len(messages))
	for u := range messages {
		users = append(users, u)
	}
	sort.Strings(users)
	for _, userID := range users {
		if !validUserID(userID) {
			return apierr.InvalidParam("messages must be keyed by user IDs")
		}
		local, isLocal := s.localpart(userID)
		for deviceID, content := range messages[userID] {
			if !validID(deviceID) {
				return apierr.InvalidParam("Invalid device ID")
			}
			if t := bytes.TrimSpace(content); len(t) == 0 || t[0] != '{' {
				return apierr.BadJSON("Each message must be a JSON object")
			}
			if isLocal {
				req.Messages = append(req.Messages, storage.ToDeviceRecipient{Localpart: local, DeviceID: deviceID, Content: compact(content)})
			}
		}
	}
	pos, recipients, _, err := s.store.SendToDevice(ctx, req)
	if err != nil {
		return internal("send to device", err)
	}
	if pos == 0 {
		return nil
	}
	publish(&s.toDevicePos, pos)
	wake := make([]string, len(recipients))
	for i, l := range recipients {
		wake[i] = s.userID(l)
	}
	s.wakeUsers(wake...)
	return nil
}

// compact drops insignificant whitespace from a JSON value that is known
// to be valid.
func compact(raw json.RawMessage) []byte {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return raw
	}
	return b.Bytes()
}

// maxToDeviceLimit bounds the messages one /sync delivers (the spec
// recommends 100).
const maxToDeviceLimit = 100

// ToDeviceInbox is the send-to-device stream as syncapi reads it
// (syncapi.ToDeviceInbox).
type ToDeviceInbox struct{ s *Service }

// ToDeviceInbox returns the service's to-device stream for syncapi.
func (s *Service) ToDeviceInbox() *ToDeviceInbox { return &ToDeviceInbox{s: s} }

// StreamKey names the stream in sync tokens.
func (t *ToDeviceInbox) StreamKey() string { return "d" }

// StreamPosition is the newest committed to-device position.
func (t *ToDeviceInbox) StreamPosition() int64 { return t.s.toDevicePos.Load() }

// ToDevice returns the device's messages with since < position <= upTo,
// oldest first, at most limit (and at most 100), and the position the next
// sync resumes after. Syncing from since proves the client received every
// message at or below it, so those are deleted now — never earlier: a
// response that is lost is retried with the old since and delivers them
// again.
func (t *ToDeviceInbox) ToDevice(ctx context.Context, userID, deviceID string, since, upTo int64, limit int) ([]json.RawMessage, int64, error) {
	s := t.s
	local, ok := s.localpart(userID)
	if !ok {
		return nil, upTo, nil
	}
	if since > 0 {
		// A since beyond upTo (a token from before a database restore)
		// proves nothing about messages above upTo.
		if _, err := s.store.AckToDevice(ctx, local, deviceID, min(since, upTo)); err != nil {
			return nil, 0, internal("acknowledge to-device messages", err)
		}
	}
	if limit <= 0 || limit > maxToDeviceLimit {
		limit = maxToDeviceLimit
	}
	evs, more, err := s.store.PendingToDevice(ctx, local, deviceID, since, upTo, limit)
	if err != nil {
		return nil, 0, internal("read to-device messages", err)
	}
	out := make([]json.RawMessage, 0, len(evs))
	for _, e := range evs {
		js, err := json.Marshal(struct {
			Sender  string          `json:"sender"`
			Type    string          `json:"type"`
			Content json.RawMessage `json:"content"`
		}{e.Sender, e.Type, e.Content})
		if err != nil {
			return nil, 0, internal("encode to-device message", err)
		}
		out = append(out, js)
	}
	next := upTo
	if more {
		next = evs[len(evs)-1].Pos
	}
	return out, next, nil
}
