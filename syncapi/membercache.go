package syncapi

import (
	"context"
	"sync"

	"myelin/internal/genmap"
	"myelin/storage"
)

// memberCacheGeneration is how many users one generation of the cache
// holds; it keeps two.
const memberCacheGeneration = 2048

// memberCache keeps each user's room memberships (storage.Sync.UserRooms)
// with the roomserver's membership generation they were read at. Every
// long-poll a message wakes starts with the user's rooms, and memberships
// change far less often than messages arrive: while the generation is
// unchanged the list is reused instead of read. The generation moves on
// any membership change in any room (and on /forget), so an entry is
// never used after its rows could have changed (roomserver.MembershipClock
// says why reading the generation before the query is enough). Lists are
// shared between requests and never modified.
type memberCache struct {
	mu    sync.Mutex
	users genmap.Map[string, memberEntry]
}

type memberEntry struct {
	gen     uint64
	members []storage.Member
}

func newMemberCache() *memberCache {
	return &memberCache{users: genmap.New[string, memberEntry](memberCacheGeneration)}
}

func (c *memberCache) get(user string, gen uint64) ([]storage.Member, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.users.Get(user)
	if !ok || e.gen != gen {
		return nil, false
	}
	return e.members, true
}

func (c *memberCache) put(user string, gen uint64, members []storage.Member) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.users.Put(user, memberEntry{gen: gen, members: members})
}

// userRooms is the user's memberships (storage.Sync.UserRooms), from the
// cache while no membership changed since it was read.
func (s *Service) userRooms(ctx context.Context, userID string) ([]storage.Member, error) {
	gen := s.rooms.Memberships().Generation()
	if m, ok := s.members.get(userID, gen); ok {
		return m, nil
	}
	m, err := s.store.UserRooms(ctx, userID)
	if err != nil {
		return nil, err
	}
	s.members.put(userID, gen, m)
	return m, nil
}
