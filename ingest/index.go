package ingest

import (
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
)

// Index records the stream sequences of valid samples per bucket, so that
// replay can pick "a random older sample of bucket X" and fetch it with
// Log.Get. It costs 8 bytes per sample (10M samples: 80 MB). It is safe for
// concurrent use. The Reader adds every sample it delivers and
// Log.BuildIndex adds the history before the reader's start.
type Index struct {
	mu   sync.RWMutex
	seqs [NumBuckets][]uint64 // each sorted ascending, no duplicates
}

// NewIndex returns an empty index.
func NewIndex() *Index { return &Index{} }

// Add records seq in bucket b. Appending in increasing order is O(1);
// out-of-order sequences are inserted in place.
func (x *Index) Add(b Bucket, seq uint64) {
	if int(b) >= NumBuckets {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	s := x.seqs[b]
	if n := len(s); n == 0 || s[n-1] < seq {
		x.seqs[b] = append(s, seq)
		return
	}
	i, found := slices.BinarySearch(s, seq)
	if !found {
		x.seqs[b] = slices.Insert(s, i, seq)
	}
}

// Count returns the number of indexed samples of bucket b with a sequence
// below `below` (0: no bound).
func (x *Index) Count(b Bucket, below uint64) int {
	if int(b) >= NumBuckets {
		return 0
	}
	x.mu.RLock()
	defer x.mu.RUnlock()
	return countBelow(x.seqs[b], below)
}

// Random returns a uniformly random indexed sequence of bucket b below
// `below` (0: no bound), or false when there is none. r is the caller's RNG
// so that sampling is reproducible from a checkpointed seed.
func (x *Index) Random(b Bucket, below uint64, r *rand.Rand) (uint64, bool) {
	if int(b) >= NumBuckets {
		return 0, false
	}
	x.mu.RLock()
	defer x.mu.RUnlock()
	n := countBelow(x.seqs[b], below)
	if n == 0 {
		return 0, false
	}
	return x.seqs[b][r.IntN(n)], true
}

// Seqs returns a copy of the indexed sequences of bucket b below `below`
// (0: no bound), ascending.
func (x *Index) Seqs(b Bucket, below uint64) []uint64 {
	if int(b) >= NumBuckets {
		return nil
	}
	x.mu.RLock()
	defer x.mu.RUnlock()
	s := x.seqs[b]
	return slices.Clone(s[:countBelow(s, below)])
}

// TrimBelow forgets sequences below first, e.g. the stream's FirstSeq after
// retention dropped old samples, so Random stops returning them.
func (x *Index) TrimBelow(first uint64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for b := range x.seqs {
		s := x.seqs[b]
		i := sort.Search(len(s), func(i int) bool { return s[i] >= first })
		x.seqs[b] = slices.Clone(s[i:])
	}
}

// Remove forgets one sequence (e.g. Log.Get found it deleted).
func (x *Index) Remove(b Bucket, seq uint64) {
	if int(b) >= NumBuckets {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if i, found := slices.BinarySearch(x.seqs[b], seq); found {
		x.seqs[b] = slices.Delete(x.seqs[b], i, i+1)
	}
}

func countBelow(s []uint64, below uint64) int {
	if below == 0 {
		return len(s)
	}
	return sort.Search(len(s), func(i int) bool { return s[i] >= below })
}
