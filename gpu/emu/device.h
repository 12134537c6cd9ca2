// Device-side half of the CPU emulator of replayd's CUDA backend: what
// kernels.cu needs from CUDA C++ (thread and block indices, __shared__,
// __syncthreads, intrinsics), defined for the host so the very same source
// compiles with g++ and runs on the emulator's fibers (see emu.h).
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

struct emu_dim3 {
	unsigned int x, y, z;
};

// emu_thread is the state of one emulated CUDA thread; emu_self points at
// the one running on this OS thread (each OS thread runs one block at a
// time, its CUDA threads as fibers).
struct emu_thread {
	emu_dim3 idx;
};
struct emu_block {
	emu_dim3 idx, dim, grid;
};
extern thread_local emu_thread* emu_self;
extern thread_local const emu_block* emu_blk;

// emu_syncthreads parks the calling fiber until every live thread of the
// block has reached a barrier; line identifies the barrier so divergent
// barriers are reported instead of silently merged.
void emu_syncthreads(int line);

#define threadIdx (emu_self->idx)
#define blockIdx (emu_blk->idx)
#define blockDim (emu_blk->dim)
#define gridDim (emu_blk->grid)
#define __syncthreads() emu_syncthreads(__LINE__)

// (undefined first: CUDA headers included before this define them for nvcc.)
#undef __global__
#undef __device__
#undef __host__
#undef __forceinline__
#undef __launch_bounds__
#undef __shared__
#undef __align__
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
// One copy per OS thread = per running block: blocks on different OS
// threads never share it, and the fibers of one block all do.
#define __shared__ static thread_local
#define __align__(n) __attribute__((aligned(n)))

// __expf is an approximate intrinsic on the GPU; the host uses expf (the
// parity tolerances cover both).
#define __expf expf

// CUDA's integer min/max overloads; mixed signedness goes to the common
// type, as CUDA's unsigned overloads do.
template <class A, class B>
inline typename std::common_type<A, B>::type min(A a, B b) {
	typedef typename std::common_type<A, B>::type T;
	return (T)a < (T)b ? (T)a : (T)b;
}
template <class A, class B>
inline typename std::common_type<A, B>::type max(A a, B b) {
	typedef typename std::common_type<A, B>::type T;
	return (T)a > (T)b ? (T)a : (T)b;
}
