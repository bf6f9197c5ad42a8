package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
)

// ToDeviceRecipient is one message of a /sendToDevice request. DeviceID
// "*" addresses every device of the user.
type ToDeviceRecipient struct {
	Localpart string
	DeviceID  string
	Content   []byte // a JSON object
}

// ToDeviceSend is one /sendToDevice request.
type ToDeviceSend struct {
	SenderLocalpart string
	SenderDevice    string
	TxnID           string
	Sender          string // the sender's Matrix user ID
	Type            string
	Messages        []ToDeviceRecipient
	TS              int64
	// PruneBefore drops the sending device's transaction IDs recorded
	// before this time (ms), so they do not accumulate.
	PruneBefore int64
}

// SendToDevice queues a request's messages in one transaction with its
// transaction ID. A retry of a transaction ID the device already used
// stores nothing and reports duplicate. "*" expands to the user's devices
// at this moment; a message for a device that does not exist is dropped
// (there is nobody to deliver it to), and an explicit device ID wins over
// "*" for that device. It returns the last stream position used (0 when
// nothing was queued) and the localparts that received messages.
func (k *Keys) SendToDevice(ctx context.Context, s ToDeviceSend) (pos int64, recipients []string, duplicate bool, err error) {
	err = k.db.Tx(ctx, func(tx *sql.Tx) error {
		pos, recipients, duplicate = 0, nil, false
		if _, err := tx.ExecContext(ctx, `DELETE FROM to_device_txns WHERE localpart = $1 AND device_id = $2 AND created_ts < $3`,
			s.SenderLocalpart, s.SenderDevice, s.PruneBefore); err != nil {
			return fmt.Errorf("prune to-device txns: %w", err)
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO to_device_txns (localpart, device_id, txn_id, created_ts) VALUES ($1, $2, $3, $4)
			ON CONFLICT (localpart, device_id, txn_id) DO NOTHING`, s.SenderLocalpart, s.SenderDevice, s.TxnID, s.TS)
		if err != nil {
			return fmt.Errorf("record to-device txn: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			duplicate = true
			return nil
		}
		type target struct{ localpart, deviceID string }
		content := map[target][]byte{}
		explicit := map[target]bool{}
		for _, m := range s.Messages {
			if m.DeviceID != "*" {
				t := target{m.Localpart, m.DeviceID}
				ok, err := deviceExists(ctx, tx, m.Localpart, m.DeviceID)
				if err != nil {
					return err
				}
				if ok {
					content[t], explicit[t] = m.Content, true
				}
				continue
			}
			ids, err := queryStrings(ctx, tx, `SELECT device_id FROM devices WHERE localpart = $1`, m.Localpart)
			if err != nil {
				return fmt.Errorf("select devices: %w", err)
			}
			for _, id := range ids {
				if t := (target{m.Localpart, id}); !explicit[t] {
					content[t] = m.Content
				}
			}
		}
		if len(content) == 0 {
			return nil
		}
		targets := make([]target, 0, len(content))
		for t := range content {
			targets = append(targets, t)
		}
		sort.Slice(targets, func(i, j int) bool {
			if targets[i].localpart != targets[j].localpart {
				return targets[i].localpart < targets[j].localpart
			}
			return targets[i].deviceID < targets[j].deviceID
		})
		last, err := advanceStream(ctx, tx, StreamToDevice, len(targets))
		if err != nil {
			return err
		}
		first := last - int64(len(targets)) + 1
		seen := map[string]bool{}
		for i, t := range targets {
			if _, err := tx.ExecContext(ctx, `INSERT INTO to_device_messages (localpart, device_id, stream_pos, sender, type, content)
				VALUES ($1, $2, $3, $4, $5, $6)`, t.localpart, t.deviceID, first+int64(i), s.Sender, s.Type, string(content[t])); err != nil {
				return fmt.Errorf("queue to-device message: %w", err)
			}
			if !seen[t.localpart] {
				seen[t.localpart] = true
				recipients = append(recipients, t.localpart)
			}
		}
		pos = last
		return nil
	})
	return pos, recipients, duplicate, err
}

type rowQueryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func deviceExists(ctx context.Context, q rowQueryer, localpart, deviceID string) (bool, error) {
	var one int
	err := q.QueryRowContext(ctx, `SELECT 1 FROM devices WHERE localpart = $1 AND device_id = $2`, localpart, deviceID).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("select device: %w", err)
	}
	return true, nil
}

// ToDeviceEvent is a queued send-to-device message.
type ToDeviceEvent struct {
	Pos     int64
	Sender  string
	Type    string
	Content []byte
}

// PendingToDevice returns up to limit of a device's messages with since <
// position <= upTo, oldest first, and whether more remain in that range.
func (k *Keys) PendingToDevice(ctx context.Context, localpart, deviceID string, since, upTo int64, limit int) ([]ToDeviceEvent, bool, error) {
	if upTo <= since || limit <= 0 {
		return nil, false, nil
	}
	rows, err := k.db.R.QueryContext(ctx, `SELECT stream_pos, sender, type, content FROM to_device_messages
		WHERE localpart = $1 AND device_id = $2 AND stream_pos > $3 AND stream_pos <= $4
		ORDER BY stream_pos LIMIT $5`, localpart, deviceID, since, upTo, limit+1)
	if err != nil {
		return nil, false, fmt.Errorf("select to-device messages: %w", err)
	}
	defer rows.Close()
	var out []ToDeviceEvent
	for rows.Next() {
		var e ToDeviceEvent
		var content string
		if err := rows.Scan(&e.Pos, &e.Sender, &e.Type, &content); err != nil {
			return nil, false, fmt.Errorf("select to-device messages: %w", err)
		}
		e.Content = []byte(content)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, false, fmt.Errorf("select to-device messages: %w", err)
	}
	if len(out) > limit {
		return out[:limit], true, nil
	}
	return out, false, nil
}

// AckToDevice deletes a device's messages at or below upTo: the client
// proved it received them by syncing from a token at or beyond upTo. It
// looks on a reader first, so the common case (nothing to delete) never
// takes the writer. It returns how many it deleted.
func (k *Keys) AckToDevice(ctx context.Context, localpart, deviceID string, upTo int64) (int64, error) {
	var one int
	err := k.db.R.QueryRowContext(ctx, `SELECT 1 FROM to_device_messages WHERE localpart = $1 AND device_id = $2 AND stream_pos <= $3 LIMIT 1`,
		localpart, deviceID, upTo).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("select delivered to-device messages: %w", err)
	}
	var n int64
	err = k.db.Tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM to_device_messages WHERE localpart = $1 AND device_id = $2 AND stream_pos <= $3`,
			localpart, deviceID, upTo)
		if err != nil {
			return fmt.Errorf("delete delivered to-device messages: %w", err)
		}
		n, _ = res.RowsAffected()
		return nil
	})
	return n, err
}
