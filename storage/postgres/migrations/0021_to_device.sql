-- Send-to-device messages and their transaction IDs (see e2ee/README.md).
-- PostgreSQL DDL: plain tables keyed by their primary keys. Column names and
-- meanings match the SQLite file exactly.

-- Send-to-device inbox: messages wait here, per recipient device, until a
-- /sync of that device with a since token at or beyond stream_pos proves
-- the client received them. sender is the sending user's Matrix ID; content
-- is the message content as sent (a JSON object).
CREATE TABLE to_device_messages (
    localpart  TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    stream_pos BIGINT NOT NULL,
    sender     TEXT NOT NULL,
    type       TEXT NOT NULL,
    content    TEXT NOT NULL,
    PRIMARY KEY (localpart, device_id, stream_pos)
);

-- Transaction IDs of /sendToDevice per sending device, written in the same
-- transaction as the messages, so a retry (even after a restart) changes
-- nothing. Pruned per device after a retention period.
CREATE TABLE to_device_txns (
    localpart  TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    txn_id     TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (localpart, device_id, txn_id)
);
