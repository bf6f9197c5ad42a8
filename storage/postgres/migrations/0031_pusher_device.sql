-- The device whose access token created each pusher: the pusher goes when
-- that device does (logout, device deletion, password change with
-- logout_devices). '' for pushers from before this column, kept as they were.
ALTER TABLE pushers ADD COLUMN device_id TEXT NOT NULL DEFAULT '';
