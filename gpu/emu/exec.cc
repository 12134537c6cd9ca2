// Execution engine of the CPU emulator: blocks of a grid are spread over a
// pool of OS threads; within a block every CUDA thread is a fiber with its
// own stack, run one after another until it reaches __syncthreads or ends,
// so barriers and __shared__ memory behave as on a GPU. Fibers switch with
// _setjmp/_longjmp (no system call), and start on their stack with a few
// instructions of assembly (x86-64 and arm64).
#include "exec.h"

#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <numeric>
#include <thread>
#include <vector>

#include "emu.h"

thread_local emu_thread* emu_self;
thread_local const emu_block* emu_blk;

void emu_fatal(const char* fmt, ...) {
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	fprintf(stderr, "replayd-emu: %s\n", buf);
	fflush(stderr);
	abort();
}

namespace {

// Each fiber's stack. The attention kernels keep up to four head-sized
// float arrays per thread (2 KiB at head_dim 128); 64 KiB leaves room.
constexpr size_t kStack = 64 << 10;

enum fiber_state { NEW, RUNNING, BARRIER, DONE };

struct fiber {
	emu_thread t;
	jmp_buf ctx;
	fiber_state st;
	int line;
	char* top;
};

// engine is the per-OS-thread state: the fibers of the block it runs.
struct engine {
	std::vector<fiber> fibers;
	char* stacks = nullptr;
	size_t nstacks = 0, stride = 0;
	jmp_buf sched;
	fiber* cur = nullptr;
	const emu_grid* g = nullptr;
	const char* activity = nullptr;
};

thread_local engine* t_engine;

engine* this_engine() {
	if (!t_engine) t_engine = new engine;  // lives as long as its thread
	return t_engine;
}

// ensure_stacks reserves n fiber stacks, each above a guard page.
void ensure_stacks(engine* e, size_t n) {
	if (e->nstacks >= n) return;
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	if (e->stacks) munmap(e->stacks, e->nstacks * e->stride);
	e->stride = kStack + page;
	void* m = mmap(nullptr, n * e->stride, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (m == MAP_FAILED) emu_fatal("cannot map %zu fiber stacks", n);
	e->stacks = (char*)m;
	e->nstacks = n;
	for (size_t i = 0; i < n; i++) mprotect(e->stacks + i * e->stride, page, PROT_NONE);
}

[[noreturn]] void fiber_main() {
	engine* e = t_engine;
	e->g->call(e->g->params);
	e->cur->st = DONE;
	_longjmp(e->sched, 1);
}

// start_on calls fiber_main on the stack whose top is top; fiber_main never
// returns here (it jumps back to the scheduler).
[[noreturn]] void start_on(char* top) {
#if defined(__x86_64__)
	asm volatile("movq %0, %%rsp\n\tcallq *%1\n\tud2" : : "r"(top), "r"(&fiber_main) : "memory");
#elif defined(__aarch64__)
	asm volatile("mov sp, %0\n\tblr %1\n\tbrk #0" : : "r"(top), "r"(&fiber_main) : "memory");
#else
#error "the CUDA emulator's fibers support x86-64 and arm64"
#endif
	__builtin_unreachable();
}

// resume runs f until it reaches a barrier or ends.
__attribute__((noinline)) void resume(engine* e, fiber* f) {
	e->cur = f;
	emu_self = &f->t;
	if (_setjmp(e->sched) == 0) {
		if (f->st == NEW) {
			f->st = RUNNING;
			start_on(f->top);
		}
		f->st = RUNNING;
		_longjmp(f->ctx, 1);
	}
}

uint64_t splitmix(uint64_t& s) {
	uint64_t z = (s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

void run_block(engine* e, const emu_grid& g, emu_dim3 bidx) {
	emu_block blk{bidx, g.block, g.grid};
	emu_blk = &blk;
	e->g = &g;
	size_t n = (size_t)g.block.x * g.block.y * g.block.z;
	ensure_stacks(e, n);
	e->fibers.resize(n);
	for (size_t i = 0; i < n; i++) {
		fiber& f = e->fibers[i];
		f.t.idx = emu_dim3{(unsigned)(i % g.block.x), (unsigned)(i / g.block.x % g.block.y),
		                   (unsigned)(i / ((size_t)g.block.x * g.block.y))};
		f.st = NEW;
		f.line = 0;
		f.top = e->stacks + (i + 1) * e->stride;  // stacks grow down
	}
	std::vector<size_t> order(n);
	std::iota(order.begin(), order.end(), 0);
	uint64_t seed = g.seed ^ (((uint64_t)bidx.x << 32) | ((uint64_t)bidx.y << 16) | bidx.z);
	auto arrange = [&] {
		if (g.schedule == EMU_REVERSE) {
			std::reverse(order.begin(), order.end());
		} else if (g.schedule == EMU_SHUFFLE) {
			for (size_t i = n; i > 1; i--) std::swap(order[i - 1], order[splitmix(seed) % i]);
		}
	};
	arrange();
	size_t live = n;
	while (live > 0) {
		const fiber *first = nullptr, *ended = nullptr;
		for (size_t i : order) {
			fiber* f = &e->fibers[i];
			if (f->st == DONE) continue;
			resume(e, f);
			if (f->st == DONE) {
				live--;
				if (!ended) ended = f;
				continue;
			}
			if (!first) {
				first = f;
			} else if (f->line != first->line) {
				emu_fatal("kernel %s, block (%u,%u,%u): divergent __syncthreads: thread (%u,%u,%u) waits at line %d, "
				          "thread (%u,%u,%u) at line %d",
				          g.name, bidx.x, bidx.y, bidx.z, first->t.idx.x, first->t.idx.y, first->t.idx.z, first->line,
				          f->t.idx.x, f->t.idx.y, f->t.idx.z, f->line);
			}
		}
		// CUDA allows __syncthreads in conditional code only when the
		// condition is the same for the whole block; a thread that ends
		// while others wait at a barrier breaks that rule.
		if (first && ended)
			emu_fatal("kernel %s, block (%u,%u,%u): thread (%u,%u,%u) waits at __syncthreads on line %d, but thread "
			          "(%u,%u,%u) returned without reaching it",
			          g.name, bidx.x, bidx.y, bidx.z, first->t.idx.x, first->t.idx.y, first->t.idx.z, first->line,
			          ended->t.idx.x, ended->t.idx.y, ended->t.idx.z);
		if (g.schedule == EMU_SHUFFLE) arrange();
	}
	e->cur = nullptr;
	emu_self = nullptr;
	emu_blk = nullptr;
}

// pool runs emu_parallel_for's tasks on its threads plus the caller's.
struct pool {
	// One parallel_for at a time, first come first served (a ticket lock:
	// std::mutex is not fair, and a stream launching back to back would
	// starve another, e.g. evaluation's beside training's).
	std::mutex tmu;
	std::condition_variable tcv;
	uint64_t nextTicket = 0, serving = 0;
	std::mutex mu;
	std::condition_variable wake, done;
	std::vector<std::thread> threads;
	uint64_t gen = 0;
	const std::function<void(int)>* fn = nullptr;
	std::atomic<long> next{0};
	long n = 0;
	int busy = 0;

	explicit pool(int workers) {
		for (int i = 0; i < workers; i++) threads.emplace_back([this] { loop(); });
		for (auto& t : threads) t.detach();  // the pool lives as long as the process
	}

	void work() {
		for (long i; (i = next.fetch_add(1)) < n;) (*fn)((int)i);
	}

	void loop() {
		emu_prepare_thread();
		uint64_t seen = 0;
		for (;;) {
			std::unique_lock<std::mutex> l(mu);
			wake.wait(l, [&] { return gen != seen; });
			seen = gen;
			l.unlock();
			work();
			l.lock();
			if (--busy == 0) done.notify_all();
		}
	}

	void parallel_for(long count, const std::function<void(int)>& f) {
		{
			std::unique_lock<std::mutex> l(tmu);
			uint64_t mine = nextTicket++;
			tcv.wait(l, [&] { return serving == mine; });
		}
		{
			std::lock_guard<std::mutex> l(mu);
			fn = &f;
			n = count;
			next = 0;
			busy = (int)threads.size();
			gen++;
		}
		wake.notify_all();
		work();
		{
			std::unique_lock<std::mutex> l(mu);
			done.wait(l, [&] { return busy == 0; });
			fn = nullptr;
		}
		{
			std::lock_guard<std::mutex> l(tmu);
			serving++;
		}
		tcv.notify_all();
	}
};

pool& the_pool() {
	static pool* p = new pool(emu_worker_threads() - 1);  // never destroyed: detached threads use it
	return *p;
}

struct sigaction old_segv, old_bus;

void on_fault(int sig, siginfo_t* info, void* uctx) {
	engine* e = t_engine;
	char buf[512];
	int n = 0;
	if (e && e->cur && e->g && emu_blk) {
		n = snprintf(buf, sizeof buf,
		             "replayd-emu: %s at address %p in kernel %s, block (%u,%u,%u), thread (%u,%u,%u): an "
		             "out-of-bounds access (every allocation ends at a guard page) or a fiber stack overflow\n",
		             strsignal(sig), info->si_addr, e->g->name, emu_blk->idx.x, emu_blk->idx.y, emu_blk->idx.z,
		             e->cur->t.idx.x, e->cur->t.idx.y, e->cur->t.idx.z);
	} else if (e && e->activity) {
		n = snprintf(buf, sizeof buf, "replayd-emu: %s at address %p in %s: a copy or memset out of bounds\n",
		             strsignal(sig), info->si_addr, e->activity);
	}
	if (n > 0) {
		ssize_t w = write(2, buf, (size_t)n);
		(void)w;
		signal(sig, SIG_DFL);  // returning re-executes the access and dies of it
		return;
	}
	struct sigaction* old = sig == SIGSEGV ? &old_segv : &old_bus;
	if (old->sa_flags & SA_SIGINFO && old->sa_sigaction) {
		old->sa_sigaction(sig, info, uctx);
	} else if (old->sa_handler != SIG_DFL && old->sa_handler != SIG_IGN && old->sa_handler) {
		old->sa_handler(sig);
	} else {
		signal(sig, SIG_DFL);
	}
}

// install_fault_handlers runs when the library loads, before the Go
// runtime installs its handlers: Go then forwards faults that happen
// outside Go code (in the emulator's threads or its cgo calls) here.
__attribute__((constructor)) void install_fault_handlers() {
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = on_fault;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGSEGV, &sa, &old_segv);
	sigaction(SIGBUS, &sa, &old_bus);
}

}  // namespace

void emu_syncthreads(int line) {
	engine* e = t_engine;
	fiber* f = e ? e->cur : nullptr;
	if (!f) emu_fatal("__syncthreads outside a kernel");
	f->line = line;
	f->st = BARRIER;
	if (_setjmp(f->ctx) == 0) _longjmp(e->sched, 1);
}

int emu_worker_threads() {
	static int n = [] {
		const char* s = getenv("REPLAYD_EMU_THREADS");
		int v = s ? atoi(s) : (int)std::thread::hardware_concurrency();
		return std::max(1, std::min(v, 64));
	}();
	return n;
}

void emu_wmma_check(const char* what, const void* p, unsigned ldm, unsigned elemSize) {
	if ((uintptr_t)p % 32 != 0 || (ldm * elemSize) % 16 != 0) {
		engine* e = t_engine;
		emu_fatal("kernel %s: wmma::%s at %p with ldm %u: the pointer must be 256-bit aligned and ldm a multiple of "
		          "16 bytes",
		          e && e->g ? e->g->name : "?", what, p, ldm);
	}
}

void emu_set_activity(const char* what) { this_engine()->activity = what; }

void emu_prepare_thread() {
	this_engine();
	stack_t ss;
	memset(&ss, 0, sizeof ss);
	ss.ss_size = 64 << 10;
	ss.ss_sp = malloc(ss.ss_size);  // lives as long as the thread
	sigaltstack(&ss, nullptr);
}

void emu_parallel_for(int n, const std::function<void(int)>& fn) {
	if (n <= 0) return;
	if (emu_worker_threads() == 1 || n == 1) {
		for (int i = 0; i < n; i++) fn(i);
		return;
	}
	the_pool().parallel_for(n, fn);
}

void emu_run_grid(const emu_grid& g) {
	long nb = (long)g.grid.x * g.grid.y * g.grid.z;
	if (nb > 0x7fffffffL) emu_fatal("kernel %s: grid of %ld blocks is more than the emulator runs", g.name, nb);
	emu_parallel_for((int)nb, [&](int b) {
		emu_dim3 idx{(unsigned)(b % g.grid.x), (unsigned)(b / g.grid.x % g.grid.y),
		             (unsigned)(b / ((long)g.grid.x * g.grid.y))};
		run_block(this_engine(), g, idx);
	});
}
