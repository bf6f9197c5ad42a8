package roomserver

import (
	"hash/maphash"
	"sync/atomic"
)

// txnFilter is a Bloom filter over the client transaction keys the event
// log holds (event_txns), so a send with a new transaction ID — nearly
// every send — learns that it is new without a database read on its
// room's serial worker. "Maybe" means the read is made as before, so a
// false positive costs one read and nothing is ever sent twice; a key is
// added before the write carrying it is submitted, so a retry finds it.
//
// It is filled from the table at start-up and sized for four times its
// rows then (at least 65,536 keys, at most 8 MB): ten bits a key, seven
// hashes, about 1% false positives at that size. Pruned keys stay in it
// until the next start; past its size it only answers "maybe" more
// often. One process, like the writer.
type txnFilter struct {
	seed  maphash.Seed
	words []atomic.Uint64
}

const (
	txnFilterHashes  = 7
	txnFilterMinKeys = 1 << 16
	txnFilterMaxWord = 1 << 20 // 8 MB of bits
)

func newTxnFilter(rows int) *txnFilter {
	keys := max(4*rows, txnFilterMinKeys)
	words := min((keys*10+63)/64, txnFilterMaxWord)
	return &txnFilter{seed: maphash.MakeSeed(), words: make([]atomic.Uint64, words)}
}

// hashes are the two halves of double hashing: bit i is h1 + i*h2.
func (f *txnFilter) hashes(k txnKey, room int64) (uint64, uint64) {
	var h maphash.Hash
	h.SetSeed(f.seed)
	for _, s := range [...]string{k.user, k.device, k.scope, k.txn} {
		h.WriteString(s)
		h.WriteByte(0)
	}
	var b [8]byte
	for i := range b {
		b[i] = byte(room >> (8 * i))
	}
	h.Write(b[:])
	h1 := h.Sum64()
	h.WriteByte(1)
	return h1, h.Sum64() | 1
}

func (f *txnFilter) add(k txnKey, room int64) {
	h1, h2 := f.hashes(k, room)
	n := uint64(len(f.words)) * 64
	for i := range uint64(txnFilterHashes) {
		bit := (h1 + i*h2) % n
		f.words[bit/64].Or(1 << (bit % 64))
	}
}

// mayContain is false only for a key never added.
func (f *txnFilter) mayContain(k txnKey, room int64) bool {
	h1, h2 := f.hashes(k, room)
	n := uint64(len(f.words)) * 64
	for i := range uint64(txnFilterHashes) {
		bit := (h1 + i*h2) % n
		if f.words[bit/64].Load()&(1<<(bit%64)) == 0 {
			return false
		}
	}
	return true
}
