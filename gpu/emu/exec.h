// The emulator's execution engine (exec.cc): runs a kernel's grid on worker
// threads, each block's CUDA threads as fibers that switch only at
// __syncthreads, and reports crashes inside kernels by name.
#pragma once

#include <cstdint>

#include "device.h"

// emu_schedule is the order in which a block's fibers run between two
// barriers. A correct kernel gives the same result under every order; a
// kernel that reads shared memory written by another thread without a
// barrier in between does not.
enum emu_schedule { EMU_FORWARD, EMU_REVERSE, EMU_SHUFFLE };

// emu_grid is one kernel launch, parameters already copied.
struct emu_grid {
	const char* name;
	void (*call)(void** params);
	void** params;
	emu_dim3 grid, block;
	emu_schedule schedule;
	uint64_t seed;  // for EMU_SHUFFLE
};

// emu_run_grid runs every block of g and returns when all have finished.
void emu_run_grid(const emu_grid& g);

// emu_worker_threads is the number of OS threads blocks run on
// (REPLAYD_EMU_THREADS, else the hardware's).
int emu_worker_threads();

// emu_set_activity names what the calling OS thread is doing (a driver call
// or copy) for the crash report; nullptr clears it.
void emu_set_activity(const char* what);

// emu_prepare_thread gives a thread the emulator creates an alternate
// signal stack, so a fiber's stack overflow is reported, not silent.
void emu_prepare_thread();

// emu_fatal prints a message prefixed with "replayd-emu: " and aborts.
[[noreturn]] void emu_fatal(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
