package gpu

import (
	"errors"
	"fmt"
	"os"
)

// ErrNotBuilt is returned by New in binaries built without the cuda tag.
var ErrNotBuilt = errors.New("gpu: this binary was built without the cuda build tag (make build-cuda)")

// ErrNoDevice is returned by New when the driver reports no CUDA device.
var ErrNoDevice = errors.New("gpu: no CUDA device")

// Precision selects how the GEMMs compute. Every tensor stays float32 in
// device memory (so weights, the AdamW moments and all element-wise ops are
// float32 whatever the mode); only the GEMM inputs may be rounded on the fly.
type Precision int

const (
	// FP32 computes GEMMs in IEEE float32 (cuBLAS CUBLAS_COMPUTE_32F, or the
	// own kernel): the mode the parity tests hold to CPU tolerances.
	FP32 Precision = iota
	// TF32 lets cuBLAS round GEMM inputs to TF32 on the tensor cores
	// (CUBLAS_COMPUTE_32F_FAST_TF32), accumulating in float32.
	TF32
	// BF16 lets cuBLAS round GEMM inputs to bfloat16 on the tensor cores
	// (CUBLAS_COMPUTE_32F_FAST_16BF), accumulating in float32: bf16 compute
	// with float32 master weights, without storing bf16 copies. Attention
	// with head size 64 runs on the bf16 tensor-core kernels too.
	BF16
)

// String implements fmt.Stringer.
func (p Precision) String() string {
	switch p {
	case FP32:
		return "fp32"
	case TF32:
		return "tf32"
	case BF16:
		return "bf16"
	}
	return fmt.Sprintf("precision(%d)", int(p))
}

// ParsePrecision reads "fp32", "tf32" or "bf16".
func ParsePrecision(s string) (Precision, error) {
	switch s {
	case "fp32", "":
		return FP32, nil
	case "tf32":
		return TF32, nil
	case "bf16":
		return BF16, nil
	}
	return 0, fmt.Errorf("gpu: unknown precision %q (fp32, tf32, bf16)", s)
}

// Options configure New.
type Options struct {
	// Device is the CUDA device ordinal.
	Device int
	// Precision of the GEMMs; the own GEMM kernel is always FP32.
	Precision Precision
	// NoCuBLAS forces the own tiled GEMM kernel even when cuBLAS loads.
	NoCuBLAS bool
	// PlainAttention keeps the float32 attention kernels in BF16 precision
	// (which otherwise trains head size 64 on the bf16 tensor-core kernels),
	// to compare the two.
	PlainAttention bool
	// CuBLASPath is tried first by dlopen; empty means the
	// REPLAYD_CUBLAS environment variable, then libcublas.so,
	// libcublas.so.13, .12 and .11 on the library path.
	CuBLASPath string
}

// cublasCandidates lists the sonames New tries in order.
func (o Options) cublasCandidates() []string {
	var c []string
	if o.CuBLASPath != "" {
		c = append(c, o.CuBLASPath)
	}
	if p := os.Getenv("REPLAYD_CUBLAS"); p != "" {
		c = append(c, p)
	}
	return append(c, "libcublas.so", "libcublas.so.13", "libcublas.so.12", "libcublas.so.11")
}
