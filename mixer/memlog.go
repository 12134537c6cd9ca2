package mixer

import (
	"context"
	"fmt"
	"sync"

	"replayd/ingest"
)

// MemLog is an in-memory Log for offline runs (`replayd policy test`) and
// tests: Append assigns consecutive sequences from 1.
type MemLog struct {
	mu      sync.RWMutex
	samples []ingest.Sample
}

// Append stores s under the next sequence, sets s.Seq and returns it.
func (l *MemLog) Append(s ingest.Sample) ingest.Sample {
	l.mu.Lock()
	defer l.mu.Unlock()
	s.Seq = uint64(len(l.samples) + 1)
	l.samples = append(l.samples, s)
	return s
}

// Get returns the sample at seq.
func (l *MemLog) Get(_ context.Context, seq uint64) (ingest.Sample, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if seq == 0 || seq > uint64(len(l.samples)) {
		return ingest.Sample{}, fmt.Errorf("memlog: no sequence %d (have 1..%d)", seq, len(l.samples))
	}
	return l.samples[seq-1], nil
}
