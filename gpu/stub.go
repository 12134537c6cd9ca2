//go:build !cuda

package gpu

import "replayd/model"

// Backend is the CUDA backend; in this build (no cuda tag) it cannot be
// created and New always fails.
type Backend struct{ model.Backend }

// New returns ErrNotBuilt: the binary was built without the cuda tag.
func New(Options) (*Backend, error) { return nil, ErrNotBuilt }

// Close implements the cuda build's Close; nothing to release here.
func (b *Backend) Close() error { return nil }

// Sync implements the cuda build's Sync; nothing to wait for here.
func (b *Backend) Sync() {}

// TensorCoreAttention implements the cuda build's method; no kernels here.
func (b *Backend) TensorCoreAttention(int) bool { return false }
