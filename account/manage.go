package account

import (
	"context"
	"errors"

	"myelin/internal/apierr"
	"myelin/storage"
)

// passwordFlows is what every UIA-protected account operation offers: prove
// the account's password again.
var passwordFlows = [][]string{{StagePassword}}

// Device is a device as the client API shows it.
type Device struct {
	DeviceID    string
	DisplayName *string
	LastSeenIP  *string
	LastSeenTS  *int64
}

func toDevice(d storage.Device) Device {
	return Device{DeviceID: d.DeviceID, DisplayName: d.DisplayName, LastSeenIP: d.LastSeenIP, LastSeenTS: d.LastSeenTS}
}

// Devices lists the caller's devices.
func (s *Service) Devices(ctx context.Context, c *Caller) ([]Device, error) {
	ds, err := s.store.Devices(ctx, c.Localpart)
	if err != nil {
		return nil, internal("list devices", err)
	}
	out := make([]Device, len(ds))
	for i, d := range ds {
		out[i] = toDevice(d)
	}
	return out, nil
}

// Device returns one of the caller's devices, or 404 M_NOT_FOUND.
func (s *Service) Device(ctx context.Context, c *Caller, deviceID string) (Device, error) {
	d, err := s.store.Device(ctx, c.Localpart, deviceID)
	if errors.Is(err, storage.ErrNotFound) {
		return Device{}, apierr.NotFound("Unknown device")
	}
	if err != nil {
		return Device{}, internal("get device", err)
	}
	return toDevice(d), nil
}

// maxDeviceNameBytes bounds a device display name.
const maxDeviceNameBytes = 1024

// RenameDevice sets a device's display name (nil leaves it unchanged). Only
// existing devices of the caller can be updated: creating devices through
// this endpoint is reserved to application services, which do not exist yet.
func (s *Service) RenameDevice(ctx context.Context, c *Caller, deviceID string, name *string) error {
	if name == nil {
		_, err := s.Device(ctx, c, deviceID)
		return err
	}
	if len(*name) > maxDeviceNameBytes {
		return apierr.InvalidParam("display_name too long")
	}
	err := s.store.SetDeviceDisplayName(ctx, c.Localpart, deviceID, *name)
	if errors.Is(err, storage.ErrNotFound) {
		return apierr.NotFound("Unknown device")
	}
	if err != nil {
		return internal("rename device", err)
	}
	return nil
}

// maxDeleteDevices bounds one /delete_devices call.
const maxDeleteDevices = 1000

// DeleteDevices deletes the caller's listed devices after user-interactive
// auth (m.login.password). Devices that do not exist are ignored, as the
// spec says ("or had been removed previously").
func (s *Service) DeleteDevices(ctx context.Context, c *Caller, deviceIDs []string, auth *AuthData) error {
	if len(deviceIDs) > maxDeleteDevices {
		return apierr.InvalidParam("Too many devices in one request")
	}
	res, err := s.interactiveAuth(ctx, uiaRequest{op: opDeleteDevices, caller: c, flows: passwordFlows, auth: auth})
	if err != nil {
		return err
	}
	err = s.store.DeleteDevices(ctx, c.Localpart, deviceIDs, res.session)
	if errors.Is(err, storage.ErrNotFound) {
		return apierr.New(400, "M_UNKNOWN", "Unknown or expired user-interactive auth session")
	}
	if err != nil {
		return internal("delete devices", err)
	}
	s.notifyDevicesRemoved(c.Localpart)
	return nil
}

// ChangePassword sets a new password after user-interactive auth
// (m.login.password with the current password). c may be nil: the spec lets
// an unauthenticated client change the password of the account it proves
// with the password stage. When logoutDevices is true (the spec's default)
// every other device is logged out; the caller's own device stays.
func (s *Service) ChangePassword(ctx context.Context, c *Caller, newPassword string, logoutDevices bool, auth *AuthData) error {
	if err := s.checkNewPassword(newPassword); err != nil {
		return err
	}
	res, err := s.interactiveAuth(ctx, uiaRequest{op: opPassword, caller: c, flows: passwordFlows, auth: auth})
	if err != nil {
		return err
	}
	hash, err := s.hashPassword(newPassword)
	if err != nil {
		return internal("hash password", err)
	}
	keep := ""
	if c != nil {
		keep = c.DeviceID
	}
	err = s.store.SetPassword(ctx, res.localpart, hash, logoutDevices, keep, res.session)
	if errors.Is(err, storage.ErrNotFound) {
		return apierr.New(400, "M_UNKNOWN", "Unknown or expired user-interactive auth session")
	}
	if err != nil {
		return internal("set password", err)
	}
	if logoutDevices {
		s.notifyDevicesRemoved(res.localpart)
	}
	return nil
}

// Deactivate permanently deactivates an account after user-interactive auth
// (m.login.password): it can never log in again, its tokens and devices are
// gone, its profile is cleared, and its user ID is never reissued. c may be
// nil, as for ChangePassword.
func (s *Service) Deactivate(ctx context.Context, c *Caller, auth *AuthData) error {
	res, err := s.interactiveAuth(ctx, uiaRequest{op: opDeactivate, caller: c, flows: passwordFlows, auth: auth})
	if err != nil {
		return err
	}
	// Deactivate drops every UIA session of the user, this one included, in
	// the same transaction.
	if err := s.store.Deactivate(ctx, res.localpart); err != nil {
		return internal("deactivate", err)
	}
	s.notifyDevicesRemoved(res.localpart)
	return nil
}

// AdminStatus answers Synapse's GET /_synapse/admin/v1/users/{userId}/admin:
// only a server admin may ask (403 M_FORBIDDEN otherwise); unknown and remote
// users are 404 M_NOT_FOUND.
func (s *Service) AdminStatus(ctx context.Context, c *Caller, userID string) (bool, error) {
	if !c.Admin {
		return false, apierr.Forbidden("You are not a server admin")
	}
	local, ok := s.LocalpartOf(userID)
	if !ok {
		return false, apierr.NotFound("Unknown user")
	}
	u, err := s.store.User(ctx, local)
	if errors.Is(err, storage.ErrNotFound) {
		return false, apierr.NotFound("Unknown user")
	}
	if err != nil {
		return false, internal("load user", err)
	}
	return u.Admin, nil
}
