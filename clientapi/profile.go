package clientapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"myelin/account"
	"myelin/internal/apierr"
	"myelin/internal/httpapi"
	"myelin/roomserver"
)

// Profiles are public reads (the spec's GET endpoints take no token) and
// owner-only writes.

func (a *api) getProfile(w http.ResponseWriter, r *http.Request) error {
	userID, err := httpapi.Var(r, "userId")
	if err != nil {
		return err
	}
	p, err := a.accounts.Profile(r.Context(), userID)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, p)
	return nil
}

func (a *api) getProfileField(w http.ResponseWriter, r *http.Request) error {
	userID, key, err := profileVars(r)
	if err != nil {
		return err
	}
	v, err := a.accounts.ProfileField(r.Context(), userID, key)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]json.RawMessage{key: v})
	return nil
}

func (a *api) setProfileField(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	userID, key, err := profileVars(r)
	if err != nil {
		return err
	}
	var body map[string]json.RawMessage
	if err := decode(r, &body); err != nil {
		return err
	}
	v, ok := body[key]
	if !ok {
		return apierr.MissingParam("Body must contain " + key)
	}
	if err := a.accounts.SetProfileField(r.Context(), c, userID, key, v); err != nil {
		return err
	}
	if err := a.updateMemberEvents(r.Context(), userID, key); err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, empty)
	return nil
}

func (a *api) deleteProfileField(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	userID, key, err := profileVars(r)
	if err != nil {
		return err
	}
	if err := a.accounts.DeleteProfileField(r.Context(), c, userID, key); err != nil {
		return err
	}
	if err := a.updateMemberEvents(r.Context(), userID, key); err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, empty)
	return nil
}

func profileVars(r *http.Request) (userID, key string, err error) {
	if userID, err = httpapi.Var(r, "userId"); err != nil {
		return "", "", err
	}
	if key, err = httpapi.Var(r, "keyName"); err != nil {
		return "", "", err
	}
	return userID, key, nil
}

// updateMemberEvents carries a changed displayname or avatar_url into the
// user's m.room.member event in every room they are joined to, as the spec's
// profile section requires, so the other members see the new profile. It runs
// here, after account has committed the change, because account sits below
// roomserver and must not import it. Each room is its own event; a room that
// fails does not stop the others, and the first failures are reported.
func (a *api) updateMemberEvents(ctx context.Context, userID, key string) error {
	if a.rooms == nil || (key != "displayname" && key != "avatar_url") {
		return nil
	}
	profile, err := a.profileOf(ctx, userID)
	if err != nil {
		return fmt.Errorf("reading profile for member events: %w", err)
	}
	rooms, err := a.rooms.JoinedRooms(ctx, userID)
	if err != nil {
		return fmt.Errorf("listing joined rooms for member events: %w", err)
	}
	var errs []error
	for _, roomID := range rooms {
		// Join with the same membership and a new profile re-sends the
		// member event; an unchanged profile is a no-op in the roomserver.
		_, err := a.rooms.Join(ctx, roomserver.MembershipRequest{RoomID: roomID, Sender: userID, Profile: profile})
		if err != nil {
			errs = append(errs, fmt.Errorf("room %s: %w", roomID, err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("profile saved, updating member events: %w", errors.Join(errs...))
	}
	return nil
}

// profileOf is a local user's displayname and avatar_url for the member
// events they appear in. M_NOT_FOUND when the account does not exist (or is
// deactivated).
func (a *api) profileOf(ctx context.Context, userID string) (roomserver.Profile, error) {
	fields, err := a.accounts.Profile(ctx, userID)
	if err != nil {
		return roomserver.Profile{}, err
	}
	var p roomserver.Profile
	if raw, ok := fields["displayname"]; ok {
		_ = json.Unmarshal(raw, &p.DisplayName)
	}
	if raw, ok := fields["avatar_url"]; ok {
		_ = json.Unmarshal(raw, &p.AvatarURL)
	}
	return p, nil
}
