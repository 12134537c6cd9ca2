package daemon

import (
	"context"
	"sync"
)

// watchPolicies follows the policy store for live swaps.
func (d *Daemon) watchPolicies(ctx context.Context, wg *sync.WaitGroup) error {
	return nil // replaced when the policy store lands
}
