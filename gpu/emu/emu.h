// Host-side interfaces of the CPU emulator of replayd's CUDA backend
// (gpu/emu, see README.md): the kernel registry that kernels_host.cc builds
// from kernels.cu, and the hooks the cuBLAS emulator uses to queue work on a
// driver stream.
#pragma once

#include <cuda.h>

#include <functional>
#include <string>
#include <vector>

// emu_kernel is one extern "C" kernel of kernels.cu, compiled for the host.
struct emu_kernel {
	std::string name;
	// sig has one letter per parameter: 'p' pointer (PTX .u64), 'i' int
	// (.u32/.s32), 'f' float (.f32); checked against the PTX at load.
	std::string sig;
	// call runs the kernel body for the current emulated thread, reading the
	// parameters from params[i] as cuLaunchKernel's kernelParams lays out.
	void (*call)(void** params);
};

// emu_registry lists every kernel of kernels.cu (kernels_host.cc).
const std::vector<emu_kernel>& emu_registry();

// emu_enqueue queues fn on stream (0: the legacy default stream) after the
// work already queued there; the cuBLAS emulator's GEMMs go through it.
CUresult emu_enqueue(CUstream stream, std::function<void()> fn);

// emu_has_current_context reports whether the calling OS thread has a
// current context (cuBLAS handles need one).
bool emu_has_current_context();

// emu_parallel_for runs fn(i) for i in [0, n) on the emulator's worker
// threads and returns when all are done; the order is unspecified.
void emu_parallel_for(int n, const std::function<void(int)>& fn);
