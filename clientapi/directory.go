package clientapi

import (
	"net/http"
	"strconv"

	"myelin/account"
	"myelin/internal/apierr"
	"myelin/internal/httpapi"
	"myelin/roomserver"
)

// Room aliases (/directory/room/{roomAlias}, /rooms/{roomId}/aliases) and
// the published room directory (/directory/list/room/{roomId},
// /publicRooms). The roomserver validates aliases (M_INVALID_PARAM) and
// decides who may change what.

func aliasVar(r *http.Request) (string, error) {
	alias, err := httpapi.Var(r, "roomAlias")
	if err != nil {
		return "", err
	}
	if len(alias) > maxIDBytes || len(alias) < 2 || alias[0] != '#' {
		return "", apierr.InvalidParam("Room alias invalid")
	}
	return alias, nil
}

// putAlias maps an alias of this server to a room: 409 M_UNKNOWN when the
// alias exists, 404 M_NOT_FOUND for an unknown room.
func (ra *roomsAPI) putAlias(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	alias, err := aliasVar(r)
	if err != nil {
		return err
	}
	var b struct {
		RoomID *string `json:"room_id"`
	}
	if err := decode(r, &b); err != nil {
		return err
	}
	if b.RoomID == nil {
		return apierr.MissingParam("room_id is required")
	}
	if !validSigilID(*b.RoomID, '!') {
		return apierr.InvalidParam("Invalid room ID")
	}
	if err := ra.rooms.CreateAlias(r.Context(), alias, *b.RoomID, c.UserID); err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, empty)
	return nil
}

// getAlias resolves an alias; the spec asks for no access token.
func (ra *roomsAPI) getAlias(w http.ResponseWriter, r *http.Request) error {
	alias, err := aliasVar(r)
	if err != nil {
		return err
	}
	roomID, servers, err := ra.rooms.ResolveAlias(r.Context(), alias)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"room_id": roomID, "servers": servers})
	return nil
}

// deleteAlias removes an alias: its creator, a server admin, or a member
// who may change the room's canonical alias may (roomserver).
func (ra *roomsAPI) deleteAlias(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	alias, err := aliasVar(r)
	if err != nil {
		return err
	}
	if err := ra.rooms.DeleteAlias(r.Context(), alias, c.UserID, c.Admin); err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, empty)
	return nil
}

// roomAliases lists the local aliases of a room to its members (anyone
// when it is world_readable); 403 otherwise, an unknown room included.
func (ra *roomsAPI) roomAliases(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	roomID, err := roomIDVar(r)
	if err != nil {
		return err
	}
	aliases, err := ra.rooms.LocalAliases(r.Context(), roomID, c.UserID)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string][]string{"aliases": aliases})
	return nil
}

func (ra *roomsAPI) getVisibility(w http.ResponseWriter, r *http.Request) error {
	roomID, err := roomIDVar(r)
	if err != nil {
		return err
	}
	v, err := ra.rooms.DirectoryVisibility(r.Context(), roomID)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]string{"visibility": v})
	return nil
}

// putVisibility publishes or unpublishes a room; visibility defaults to
// "public" (spec).
func (ra *roomsAPI) putVisibility(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	roomID, err := roomIDVar(r)
	if err != nil {
		return err
	}
	var b struct {
		Visibility *string `json:"visibility"`
	}
	if err := decode(r, &b); err != nil {
		return err
	}
	v := "public"
	if b.Visibility != nil {
		v = *b.Visibility
	}
	if err := ra.rooms.SetDirectoryVisibility(r.Context(), roomID, c.UserID, v, c.Admin); err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, empty)
	return nil
}

// maxPublicRoomsLimit caps one page of the directory.
const maxPublicRoomsLimit = 500

// publicRoomsGet is GET /publicRooms, which the spec serves without an
// access token.
func (ra *roomsAPI) publicRoomsGet(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	if err := ra.checkDirectoryServer(q.Get("server")); err != nil {
		return err
	}
	query := roomserver.PublicRoomsQuery{Since: q.Get("since")}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 0 {
			return apierr.InvalidParam("limit must be a non-negative integer")
		}
		query.Limit = n
	}
	return ra.writePublicRooms(w, r, query)
}

// publicRoomsPost is POST /publicRooms with a filter.
func (ra *roomsAPI) publicRoomsPost(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	if err := ra.checkDirectoryServer(r.URL.Query().Get("server")); err != nil {
		return err
	}
	var b struct {
		Limit  *int   `json:"limit"`
		Since  string `json:"since"`
		Filter *struct {
			GenericSearchTerm string    `json:"generic_search_term"`
			RoomTypes         []*string `json:"room_types"`
		} `json:"filter"`
		IncludeAllNetworks   bool   `json:"include_all_networks"`
		ThirdPartyInstanceID string `json:"third_party_instance_id"`
	}
	if err := decode(r, &b); err != nil {
		return err
	}
	query := roomserver.PublicRoomsQuery{Since: b.Since}
	if b.Limit != nil {
		if *b.Limit < 0 {
			return apierr.InvalidParam("limit must be a non-negative integer")
		}
		query.Limit = *b.Limit
	}
	if b.Filter != nil {
		query.Filter = b.Filter.GenericSearchTerm
		if b.Filter.RoomTypes != nil {
			// null in the list stands for rooms without a type.
			query.RoomTypes = []string{}
			for _, t := range b.Filter.RoomTypes {
				if t == nil {
					query.RoomTypes = append(query.RoomTypes, "")
				} else {
					query.RoomTypes = append(query.RoomTypes, *t)
				}
			}
		}
	}
	if b.ThirdPartyInstanceID != "" && !b.IncludeAllNetworks {
		// No application service has registered a network, so no room
		// belongs to the one asked for.
		httpapi.WriteJSON(w, http.StatusOK, roomserver.PublicRoomsPage{Chunk: []roomserver.PublicRoom{}})
		return nil
	}
	return ra.writePublicRooms(w, r, query)
}

func (ra *roomsAPI) writePublicRooms(w http.ResponseWriter, r *http.Request, q roomserver.PublicRoomsQuery) error {
	if q.Limit == 0 || q.Limit > maxPublicRoomsLimit {
		q.Limit = maxPublicRoomsLimit
	}
	page, err := ra.rooms.PublicRooms(r.Context(), q)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, page)
	return nil
}

// checkDirectoryServer accepts the `server` parameter when it names this
// server. NOTSPEC: another server's directory needs federation, which
// this server does not offer yet; 400 M_INVALID_PARAM says so instead of
// answering with our own rooms.
func (ra *roomsAPI) checkDirectoryServer(server string) error {
	if server != "" && server != ra.cfg.ServerName {
		return apierr.InvalidParam("Only this server's room directory can be listed")
	}
	return nil
}
