//go:build cuda

package gpu

/*
#cgo LDFLAGS: -lcuda
#include <cuda.h>

// Stream-ordered allocation (CUDA 11.2+), which gorgonia.org/cu does not
// wrap.
static CUresult rd_alloc_async(CUdeviceptr* p, size_t n, CUstream s) { return cuMemAllocAsync(p, n, s); }
static CUresult rd_free_async(CUdeviceptr p, CUstream s) { return cuMemFreeAsync(p, s); }

// rd_keep_pool makes the device's default pool keep freed memory instead of
// returning it to the system at every synchronisation (threshold 0 by
// default), so buffers freed and allocated again (evaluation, decoding)
// are served from the pool.
static CUresult rd_keep_pool(CUdevice dev) {
	CUmemoryPool pool;
	CUresult r = cuDeviceGetDefaultMemPool(&pool, dev);
	if (r != CUDA_SUCCESS) return r;
	cuuint64_t keep = ~(cuuint64_t)0;
	return cuMemPoolSetAttribute(pool, CU_MEMPOOL_ATTR_RELEASE_THRESHOLD, &keep);
}
*/
import "C"

import (
	"fmt"
	"unsafe"

	"gorgonia.org/cu"
)

// memAlloc and memFree allocate and free in the order of the backend's
// stream, from the device's memory pool, counted in allocated. Unlike
// cuMemFree, which waits for the whole device, a stream-ordered free waits
// for nothing: the memory returns to the pool once the work queued before
// it has run. That matters when evaluation (its own backend and stream)
// frees its buffers while training keeps the device busy: with cuMemFree
// every free waited for training's queued step.
func (b *Backend) memAlloc(bytes int64) (cu.DevicePtr, error) {
	var p C.CUdeviceptr
	if r := C.rd_alloc_async(&p, C.size_t(bytes), b.cstream()); r != C.CUDA_SUCCESS {
		return 0, fmt.Errorf("cuMemAllocAsync %d bytes: CUDA error %d", bytes, int(r))
	}
	b.allocated.Add(bytes)
	return cu.DevicePtr(p), nil
}

func (b *Backend) memFree(p cu.DevicePtr, bytes int64) error {
	if r := C.rd_free_async(C.CUdeviceptr(p), b.cstream()); r != C.CUDA_SUCCESS {
		return fmt.Errorf("cuMemFreeAsync: CUDA error %d", int(r))
	}
	b.allocated.Add(-bytes)
	return nil
}

func (b *Backend) cstream() C.CUstream { return C.CUstream(unsafe.Pointer(b.stream.C())) }

// keepPool sets the default pool's release threshold to keep freed memory.
func (b *Backend) keepPool() error {
	if r := C.rd_keep_pool(C.CUdevice(b.dev)); r != C.CUDA_SUCCESS {
		return fmt.Errorf("memory pool release threshold: CUDA error %d", int(r))
	}
	return nil
}
