package policystore

import (
	"bytes"
	"context"
	"fmt"

	"replayd/mixer"
)

// Follow keeps m on the active policy: for the active pointer and every
// change it fetches the module, loads and validates it in host with a dry
// run on m's live statistics, and swaps it in (between two batches). A
// pointer naming the policy already in use is skipped. A policy that
// cannot be fetched or is refused is reported to onErr and changes
// nothing: the mixer keeps its policy. Follow returns when ctx ends.
func (s *Store) Follow(ctx context.Context, host *mixer.Host, m *mixer.Mixer, onSwap func(*mixer.Policy), onErr func(Pointer, error)) error {
	return s.Watch(ctx, func(p Pointer) {
		cur := m.Policy()
		if cur != nil && cur.ModuleHash() == p.SHA256 && bytes.Equal(cur.Config(), p.Config) {
			return
		}
		wasm, err := s.Fetch(ctx, p)
		if err != nil {
			if onErr != nil {
				onErr(p, err)
			}
			return
		}
		pol, err := host.Load(ctx, p.Name, wasm, mixer.LoadOptions{Config: p.Config, Stats: m.DryRunInput()})
		if err != nil {
			if onErr != nil {
				onErr(p, fmt.Errorf("policystore: refused %s (%s): %w", p.Name, p.SHA256, err))
			}
			return
		}
		m.Swap(pol)
		if onSwap != nil {
			onSwap(pol)
		}
	})
}
