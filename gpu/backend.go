//go:build cuda

package gpu

import (
	_ "embed"
	"fmt"
	"math"
	"runtime"
	"sync/atomic"
	"unsafe"

	"gorgonia.org/cu"

	"replayd/model"
)

// kernelsPTX is gpu/kernels/kernels.cu compiled for compute_80 (make ptx).
// The driver JIT-compiles it for the device at New, so the binary carries
// no SASS and depends on no CUDA toolkit library.
//
//go:embed kernels/kernels.ptx
var kernelsPTX string

// headDims are the attention head sizes kernels.cu instantiates.
var headDims = []int{16, 32, 64, 96, 128}

// Backend is the CUDA model.Backend. All work is queued on one stream, in
// call order, so kernels never race on the shared scratch buffer and the
// host only waits in Download, SumSquares and Sync. Methods panic with a wrapped
// error on a CUDA failure (model.Backend has no error results and a failed
// context cannot be used further); New and Close return errors.
type Backend struct {
	opts   Options
	dev    cu.Device
	ctx    cu.CUContext
	stream cu.Stream
	mod    cu.Module
	fn     map[string]cu.Function
	blas   *cublas // nil: own GEMM kernel
	sms    int
	name   string

	// scratch is a grow-only device buffer for per-op temporaries
	// (reduction partials, attention's D, embedding segments).
	scratch    cu.DevicePtr
	scratchLen int64
	// allocated is the device memory this backend holds, in bytes.
	allocated atomic.Int64
}

// tensor is a device float32 buffer or a view of one.
type tensor struct {
	ptr   cu.DevicePtr
	n     int
	owner bool
}

// Len implements model.Tensor.
func (t *tensor) Len() int { return t.n }

// intTensor is a device int32 buffer. IntTensors are only ever written by
// UploadInt, so the host keeps a copy: EmbeddingBackward groups rows by
// token on the host instead of using atomics.
type intTensor struct {
	ptr  cu.DevicePtr
	n    int
	host []int32
	seg  *segments // cached token grouping of host, nil when stale
}

// Len implements model.IntTensor.
func (t *intTensor) Len() int { return t.n }

// New creates a backend on device opts.Device: it retains the primary
// context (the one cuBLAS also uses), loads the kernels and, unless
// opts.NoCuBLAS, a cuBLAS library.
func New(opts Options) (*Backend, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	n, err := cu.NumDevices()
	if err != nil {
		return nil, fmt.Errorf("gpu: count devices: %w", err)
	}
	if n == 0 {
		return nil, ErrNoDevice
	}
	if opts.Device < 0 || opts.Device >= n {
		return nil, fmt.Errorf("gpu: device %d out of range (%d devices)", opts.Device, n)
	}
	b := &Backend{opts: opts, dev: cu.Device(opts.Device), fn: map[string]cu.Function{}}
	if b.ctx, err = b.dev.RetainPrimaryCtx(); err != nil {
		return nil, fmt.Errorf("gpu: retain primary context of device %d: %w", opts.Device, err)
	}
	if err := cu.SetCurrentContext(b.ctx); err != nil {
		_ = b.dev.ReleasePrimaryCtx() // the set-context error is the one to report
		return nil, fmt.Errorf("gpu: set context: %w", err)
	}
	if err := b.init(); err != nil {
		_ = b.closeLocked() // the init error is the one to report
		return nil, err
	}
	return b, nil
}

func (b *Backend) init() error {
	var err error
	if b.sms, err = b.dev.Attribute(cu.MultiprocessorCount); err != nil {
		return fmt.Errorf("gpu: query multiprocessors: %w", err)
	}
	if b.stream, err = cu.MakeStream(cu.NonBlocking); err != nil {
		return fmt.Errorf("gpu: create stream: %w", err)
	}
	if err := b.keepPool(); err != nil {
		return fmt.Errorf("gpu: %w", err)
	}
	if b.mod, err = cu.LoadData(kernelsPTX); err != nil {
		return fmt.Errorf("gpu: JIT-load kernels.ptx (%d bytes): %w", len(kernelsPTX), err)
	}
	names := []string{"axpy_f32", "scale_f32", "sumsq_partial", "embedding_fwd", "embedding_bwd",
		"rmsnorm_fwd", "rmsnorm_bwd_dx", "rmsnorm_bwd_dw_partial", "colsum_acc", "rope",
		"swiglu_fwd", "swiglu_bwd", "cross_entropy", "adamw", "sgemm_tiled", "attn_delta",
		"attn_fwd_tc64", "attn_bwd_dq_tc64", "attn_bwd_dkv_tc64"}
	for _, hd := range headDims {
		names = append(names, fmt.Sprintf("attn_fwd_%d", hd), fmt.Sprintf("attn_bwd_dq_%d", hd), fmt.Sprintf("attn_bwd_dkv_%d", hd))
	}
	for _, nm := range names {
		f, err := b.mod.Function(nm)
		if err != nil {
			return fmt.Errorf("gpu: kernel %s: %w", nm, err)
		}
		b.fn[nm] = f
	}
	gemm := "own-sgemm"
	if !b.opts.NoCuBLAS {
		// A missing cuBLAS is not an error: the own kernel is slower but
		// complete. The reason is kept in the name for logs.
		bl, err := loadCuBLAS(b.opts.cublasCandidates(), unsafe.Pointer(b.stream.C()))
		if err == nil {
			b.blas = bl
			gemm = "cublas-" + b.opts.Precision.String()
		}
	}
	devName, _ := b.dev.Name()
	b.name = fmt.Sprintf("cuda/%s (%s)", gemm, devName)
	return nil
}

// Close releases the stream, the module, cuBLAS and the primary context.
// Tensors not freed are released with the context's memory only when no
// other user holds the primary context.
func (b *Backend) Close() error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := cu.SetCurrentContext(b.ctx); err != nil {
		return fmt.Errorf("gpu: close: set context: %w", err)
	}
	return b.closeLocked()
}

func (b *Backend) closeLocked() error {
	var first error
	keep := func(err error, what string) {
		if err != nil && first == nil {
			first = fmt.Errorf("gpu: close: %s: %w", what, err)
		}
	}
	if b.blas != nil {
		keep(b.blas.close(), "cuBLAS")
		b.blas = nil
	}
	if b.scratch != 0 {
		keep(b.memFree(b.scratch, b.scratchLen), "free scratch")
		b.scratch, b.scratchLen = 0, 0
	}
	var zeroStream cu.Stream
	if b.stream != zeroStream {
		keep(b.stream.Synchronize(), "synchronize")
		keep(b.stream.Destroy(), "destroy stream")
	}
	var zeroMod cu.Module
	if b.mod != zeroMod {
		keep(b.mod.Unload(), "unload module")
		b.mod = zeroMod
	}
	keep(b.dev.ReleasePrimaryCtx(), "release primary context")
	return first
}

// enter pins the goroutine to its OS thread and makes the backend's context
// current there (CUDA contexts are per thread and goroutines migrate); the
// returned function undoes the pin.
func (b *Backend) enter() func() {
	runtime.LockOSThread()
	if err := cu.SetCurrentContext(b.ctx); err != nil {
		runtime.UnlockOSThread()
		panic(fmt.Errorf("gpu: set context: %w", err))
	}
	return runtime.UnlockOSThread
}

// check panics with op's context when err is not nil.
func check(op string, err error) {
	if err != nil {
		panic(fmt.Errorf("gpu: %s: %w", op, err))
	}
}

// Sync waits for all queued work and panics on an asynchronous error.
func (b *Backend) Sync() {
	defer b.enter()()
	check("synchronize", b.stream.Synchronize())
}

// Name implements model.Backend.
func (b *Backend) Name() string { return b.name }

// Threads implements model.Backend: the device's multiprocessor count.
func (b *Backend) Threads() int { return b.sms }

// GEMM reports which GEMM the backend uses: "cublas" or "own".
func (b *Backend) GEMM() string {
	if b.blas != nil {
		return "cublas"
	}
	return "own"
}

// Allocated is the device memory the backend holds (tensors, scratch and
// embedding groupings), in bytes: what a leak would grow.
func (b *Backend) Allocated() int64 { return b.allocated.Load() }

func (b *Backend) alloc(bytes int64, op string) cu.DevicePtr {
	if bytes == 0 {
		return 0
	}
	p, err := b.memAlloc(bytes)
	check(fmt.Sprintf("%s: allocate %d bytes", op, bytes), err)
	check(op+": zero", cu.MemsetD32Async(p, 0, (bytes+3)/4, b.stream))
	return p
}

// Alloc implements model.Backend.
func (b *Backend) Alloc(n int) model.Tensor {
	defer b.enter()()
	return &tensor{ptr: b.alloc(int64(n)*4, "Alloc"), n: n, owner: true}
}

// AllocInt implements model.Backend.
func (b *Backend) AllocInt(n int) model.IntTensor {
	defer b.enter()()
	return &intTensor{ptr: b.alloc(int64(n)*4, "AllocInt"), n: n, host: make([]int32, n)}
}

// View implements model.Backend.
func (b *Backend) View(t model.Tensor, off, n int) model.Tensor {
	p := dt(t)
	if off < 0 || n < 0 || off+n > p.n {
		panic(fmt.Sprintf("gpu: View [%d,%d) of a %d-element tensor", off, off+n, p.n))
	}
	return &tensor{ptr: p.ptr + cu.DevicePtr(off*4), n: n}
}

// Free implements model.Backend. The free is ordered on the stream after
// the work already queued, which may still use the buffer; the host does
// not wait.
func (b *Backend) Free(t model.Tensor) {
	p := dt(t)
	if !p.owner || p.ptr == 0 {
		return
	}
	defer b.enter()()
	check("Free", b.memFree(p.ptr, int64(p.n)*4))
	p.ptr, p.owner = 0, false
}

// FreeInt implements model.Backend: it releases an IntTensor and its
// cached token grouping.
func (b *Backend) FreeInt(t model.IntTensor) {
	p := it(t)
	if p.ptr == 0 && p.seg == nil {
		return
	}
	defer b.enter()()
	if p.seg != nil {
		check("FreeInt: segments", b.memFree(p.seg.dev, p.seg.deviceBytes))
		p.seg = nil
	}
	if p.ptr != 0 {
		check("FreeInt", b.memFree(p.ptr, int64(p.n)*4))
		p.ptr = 0
	}
}

func mustLen(op string, a, b int) {
	if a != b {
		panic(fmt.Sprintf("gpu: %s: tensor length %d != %d", op, a, b))
	}
}

// Upload implements model.Backend. The copy is queued on the stream; from
// pageable memory the driver has consumed src when the call returns, so
// the caller may reuse it at once.
func (b *Backend) Upload(dst model.Tensor, src []float32) {
	d := dt(dst)
	mustLen("Upload", d.n, len(src))
	if len(src) == 0 {
		return
	}
	defer b.enter()()
	check("Upload", cu.MemcpyHtoDAsync(d.ptr, unsafe.Pointer(&src[0]), int64(len(src))*4, b.stream))
}

// Download implements model.Backend; it waits for the queued work.
func (b *Backend) Download(dst []float32, src model.Tensor) {
	s := dt(src)
	mustLen("Download", len(dst), s.n)
	defer b.enter()()
	if len(dst) > 0 {
		check("Download", cu.MemcpyDtoHAsync(unsafe.Pointer(&dst[0]), s.ptr, int64(len(dst))*4, b.stream))
	}
	check("Download: synchronize", b.stream.Synchronize())
}

// UploadInt implements model.Backend.
func (b *Backend) UploadInt(dst model.IntTensor, src []int32) {
	d := it(dst)
	mustLen("UploadInt", d.n, len(src))
	copy(d.host, src)
	if d.seg != nil {
		d.seg.rows = -1 // stale: segmentsOf frees and rebuilds it
	}
	if len(src) == 0 {
		return
	}
	defer b.enter()()
	check("UploadInt", cu.MemcpyHtoDAsync(d.ptr, unsafe.Pointer(&src[0]), int64(len(src))*4, b.stream))
}

// scratchPtr returns a scratch buffer of at least bytes. Growing frees the
// old buffer in stream order, after the queued work that may still read it.
func (b *Backend) scratchPtr(bytes int64) cu.DevicePtr {
	if bytes <= b.scratchLen {
		return b.scratch
	}
	if b.scratch != 0 {
		check("scratch: free", b.memFree(b.scratch, b.scratchLen))
		b.scratch, b.scratchLen = 0, 0
	}
	n := max(bytes, 1<<20)
	p, err := b.memAlloc(n)
	check(fmt.Sprintf("scratch: allocate %d bytes", n), err)
	b.scratch, b.scratchLen = p, n
	return p
}

func dt(t model.Tensor) *tensor {
	p, ok := t.(*tensor)
	if !ok {
		panic(fmt.Sprintf("gpu: tensor of type %T is not a gpu tensor", t))
	}
	return p
}

func it(t model.IntTensor) *intTensor {
	p, ok := t.(*intTensor)
	if !ok {
		panic(fmt.Sprintf("gpu: int tensor of type %T is not a gpu tensor", t))
	}
	return p
}

// dim3 is a launch grid.
type dim3 struct{ x, y, z int }

// launch queues kernel name on the stream. cu's Launch copies 8 bytes per
// parameter, so every argument gets its own 8-byte slot: pointers as is,
// int and float32 in the low 4 bytes (the driver reads as many bytes as
// the kernel's parameter has, and the machine is little-endian).
func (b *Backend) launch(name string, grid dim3, block, shared int, args ...any) {
	fn, ok := b.fn[name]
	if !ok {
		panic(fmt.Sprintf("gpu: no kernel %s", name))
	}
	if grid.x == 0 || grid.y == 0 || grid.z == 0 {
		return
	}
	slots := make([]uint64, len(args))
	ptrs := make([]unsafe.Pointer, len(args))
	for i, a := range args {
		switch v := a.(type) {
		case cu.DevicePtr:
			slots[i] = uint64(v)
		case int:
			if v > math.MaxInt32 || v < math.MinInt32 {
				panic(fmt.Sprintf("gpu: %s: argument %d = %d overflows int32", name, i, v))
			}
			slots[i] = uint64(uint32(int32(v)))
		case float32:
			slots[i] = uint64(math.Float32bits(v))
		case bool:
			if v {
				slots[i] = 1
			}
		default:
			panic(fmt.Sprintf("gpu: %s: argument %d has unsupported type %T", name, i, a))
		}
		ptrs[i] = unsafe.Pointer(&slots[i])
	}
	check("launch "+name, fn.Launch(grid.x, grid.y, grid.z, block, 1, 1, shared, b.stream, ptrs))
}

// gridFor is a 1-D grid-stride launch size for n elements.
func gridFor(n int) dim3 {
	return dim3{min((n+255)/256, 8192), 1, 1}
}

var _ model.Backend = (*Backend)(nil)
