package tokenizer

import (
	"container/heap"
	"math"
	"sync"
)

// bpeModel is rank-based byte-level BPE: a word starts as its bytes and the
// adjacent pair with the lowest merge rank (leftmost on ties) is merged
// until no pair has a rank. This is what HF's BPE.merge_word and tiktoken's
// byte_pair_merge both compute.
type bpeModel struct {
	// merges maps pairKey(left, right) to rank<<32 | merged id.
	merges map[uint64]uint64
	// byteIDs is the id of each single-byte token, -1 if absent.
	byteIDs [256]int32
	// vocab maps a token's raw bytes to its id.
	vocab map[string]int32
	// ignoreMerges looks a whole word up in vocab before merging (HF's
	// ignore_merges, LLaMA 3; tiktoken always does this).
	ignoreMerges bool
}

const noRank = math.MaxUint32

func pairKey(a, b int32) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

// rank returns the merge rank and merged id of (a, b), or noRank.
func (m *bpeModel) rank(a, b int32) (uint32, int32) {
	if a < 0 || b < 0 {
		return noRank, -1
	}
	v, ok := m.merges[pairKey(a, b)]
	if !ok {
		return noRank, -1
	}
	return uint32(v >> 32), int32(uint32(v))
}

// shortWord is the length up to which the quadratic merge loop (fast for
// short words, no allocation) is used; longer words use a heap so that a
// pathological run of thousands of spaces stays O(n log n).
const shortWord = 128

// encodeWord appends the ids of word (raw bytes) to dst.
func (m *bpeModel) encodeWord(word string, dst []int32) []int32 {
	if len(word) == 1 {
		if id := m.byteIDs[word[0]]; id >= 0 {
			dst = append(dst, id)
		}
		return dst
	}
	if m.ignoreMerges {
		if id, ok := m.vocab[word]; ok {
			return append(dst, id)
		}
	}
	if len(word) > shortWord {
		return m.encodeLong(word, dst)
	}
	var idBuf [shortWord]int32
	var rankBuf [shortWord]uint32
	var newBuf [shortWord]int32
	ids := idBuf[:len(word)]
	for i := 0; i < len(word); i++ {
		ids[i] = m.byteIDs[word[i]]
	}
	ranks := rankBuf[:len(word)-1]
	news := newBuf[:len(word)-1]
	for i := range ranks {
		ranks[i], news[i] = m.rank(ids[i], ids[i+1])
	}
	for len(ranks) > 0 {
		best, bi := uint32(noRank), -1
		for i, r := range ranks {
			if r < best {
				best, bi = r, i
			}
		}
		if bi < 0 {
			break
		}
		ids[bi] = news[bi]
		copy(ids[bi+1:], ids[bi+2:])
		ids = ids[:len(ids)-1]
		copy(ranks[bi:], ranks[bi+1:])
		ranks = ranks[:len(ranks)-1]
		copy(news[bi:], news[bi+1:])
		news = news[:len(news)-1]
		if bi > 0 {
			ranks[bi-1], news[bi-1] = m.rank(ids[bi-1], ids[bi])
		}
		if bi < len(ranks) {
			ranks[bi], news[bi] = m.rank(ids[bi], ids[bi+1])
		}
	}
	for _, id := range ids {
		if id >= 0 {
			dst = append(dst, id)
		}
	}
	return dst
}

// mergeCand is a pending merge of the symbol at pos with its right
// neighbour; it is stale if either symbol changed since it was pushed.
type mergeCand struct {
	rank        uint32
	pos         int32
	left, right int32
}

type candHeap []mergeCand

func (h candHeap) Len() int { return len(h) }
func (h candHeap) Less(i, j int) bool {
	if h[i].rank != h[j].rank {
		return h[i].rank < h[j].rank
	}
	return h[i].pos < h[j].pos
}
func (h candHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *candHeap) Push(x any)   { *h = append(*h, x.(mergeCand)) }
func (h *candHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// encodeLong is the heap version of the merge loop for long words. Symbols
// keep the byte position of their first byte, so heap order (rank, then
// position) is the same leftmost-lowest order as the short loop.
func (m *bpeModel) encodeLong(word string, dst []int32) []int32 {
	n := len(word)
	ids := make([]int32, n)
	next := make([]int32, n) // -1 = end
	prev := make([]int32, n) // -1 = start
	alive := make([]bool, n)
	for i := 0; i < n; i++ {
		ids[i] = m.byteIDs[word[i]]
		next[i] = int32(i + 1)
		prev[i] = int32(i - 1)
		alive[i] = true
	}
	next[n-1] = -1
	h := make(candHeap, 0, n)
	for i := 0; i+1 < n; i++ {
		if r, _ := m.rank(ids[i], ids[i+1]); r != noRank {
			h = append(h, mergeCand{r, int32(i), ids[i], ids[i+1]})
		}
	}
	heap.Init(&h)
	for h.Len() > 0 {
		c := heap.Pop(&h).(mergeCand)
		p := c.pos
		if !alive[p] || ids[p] != c.left {
			continue
		}
		q := next[p]
		if q < 0 || ids[q] != c.right {
			continue
		}
		_, merged := m.rank(c.left, c.right)
		ids[p] = merged
		alive[q] = false
		next[p] = next[q]
		if next[q] >= 0 {
			prev[next[q]] = p
		}
		if pp := prev[p]; pp >= 0 {
			if r, _ := m.rank(ids[pp], ids[p]); r != noRank {
				heap.Push(&h, mergeCand{r, pp, ids[pp], ids[p]})
			}
		}
		if nq := next[p]; nq >= 0 {
			if r, _ := m.rank(ids[p], ids[nq]); r != noRank {
				heap.Push(&h, mergeCand{r, p, ids[p], ids[nq]})
			}
		}
	}
	for i := int32(0); i >= 0; i = next[i] {
		if ids[i] >= 0 {
			dst = append(dst, ids[i])
		}
	}
	return dst
}

// wordCache memoises encodeWord for short words. Text is Zipfian, so most
// pieces repeat; a hit costs a map lookup instead of the merge loop. It is
// sharded so that goroutines encoding in parallel rarely meet on a lock, and
// bounded: a full shard is emptied (cheap, and the hot words come back).
type wordCache struct {
	perShard int
	shards   [cacheShards]cacheShard
}

const (
	cacheShards = 64
	// cacheMaxWord is the longest word cached; longer ones are rare.
	cacheMaxWord = 48
)

type cacheShard struct {
	mu sync.RWMutex
	m  map[string][]int32
	_  [40]byte // keep shards on separate cache lines
}

func newWordCache(capacity int) *wordCache {
	c := &wordCache{perShard: max(capacity/cacheShards, 16)}
	for i := range c.shards {
		c.shards[i].m = make(map[string][]int32)
	}
	return c
}

// shard picks a shard from the word's length and two of its bytes: far
// cheaper than hashing it a second time (the map hashes it anyway), and
// spread enough for lock contention and capacity.
func (c *wordCache) shard(w string) *cacheShard {
	h := uint(len(w))*0x9E37 + uint(w[len(w)-1])*31 + uint(w[len(w)/2])
	return &c.shards[h%cacheShards]
}

func (c *wordCache) get(w string) ([]int32, bool) {
	s := c.shard(w)
	s.mu.RLock()
	v, ok := s.m[w]
	s.mu.RUnlock()
	return v, ok
}

func (c *wordCache) put(w string, ids []int32) {
	s := c.shard(w)
	s.mu.Lock()
	if len(s.m) >= c.perShard {
		clear(s.m)
	}
	s.m[w] = ids
	s.mu.Unlock()
}
