// The CUDA driver API, as much of it as replayd's CUDA backend (package
// gpu, through gorgonia.org/cu) calls, implemented on the CPU: built as
// libcuda.so.1 and put first on LD_LIBRARY_PATH, it lets the cuda build's
// tests run on a machine without a GPU. Kernels come from kernels.cu built
// for the host (kernels_host.cc); the PTX handed to cuModuleLoadData is
// parsed only to check that it declares the same kernels with the same
// parameters, so a stale kernels.ptx is an error here as on a GPU.
//
// Checks a GPU makes (or should make) and this makes loudly: a current
// context on the calling thread, copies and memsets inside one allocation,
// kernel pointer arguments inside an allocation, block sizes within the
// device limits and the kernel's __launch_bounds__, barriers reached by
// every thread of a block at the same __syncthreads; device memory is
// filled with 0xff bytes (NaN) when allocated and every allocation ends at
// an inaccessible page, so uninitialised reads and overruns show.
#include <cuda.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "emu.h"
#include "exec.h"

namespace {

// stream is an in-order queue of work run by its own OS thread, so the
// host runs ahead of the "device" as it would with a GPU.
struct stream {
	std::mutex mu;
	std::condition_variable cv, idle;
	std::deque<std::function<void()>> q;
	bool stop = false;
	// pushed and completed count the work items; a wait covers the work
	// queued before it (as on a GPU), not later work another thread keeps
	// queueing, which would starve it.
	uint64_t pushed = 0, completed = 0;
	std::thread th;

	stream() {
		th = std::thread([this] { loop(); });
	}
	void loop() {
		emu_prepare_thread();
		std::unique_lock<std::mutex> l(mu);
		for (;;) {
			cv.wait(l, [&] { return stop || !q.empty(); });
			if (q.empty()) return;  // stop requested and drained
			auto fn = std::move(q.front());
			q.pop_front();
			l.unlock();
			fn();
			l.lock();
			completed++;
			idle.notify_all();
		}
	}
	void push(std::function<void()> fn) {
		std::lock_guard<std::mutex> l(mu);
		q.push_back(std::move(fn));
		pushed++;
		cv.notify_one();
	}
	void sync() {
		std::unique_lock<std::mutex> l(mu);
		uint64_t target = pushed;
		idle.wait(l, [&] { return completed >= target; });
	}
	bool done() {
		std::lock_guard<std::mutex> l(mu);
		return completed == pushed;
	}
	~stream() {
		{
			std::lock_guard<std::mutex> l(mu);
			stop = true;
		}
		cv.notify_one();
		th.join();
	}
};

struct allocation {
	char* map;
	size_t mapLen, size;
};

struct ptx_entry {
	std::string sig;  // as emu_kernel::sig
	unsigned maxntid = 0;
};

struct function {
	const emu_kernel* k;
	unsigned maxThreads;
};

struct module {
	std::map<std::string, std::unique_ptr<function>> funcs;
};

struct event {
	std::mutex mu;
	std::condition_variable cv;
	bool recorded = false, pending = false;
	std::chrono::steady_clock::time_point at;
};

struct context {
	int refs = 0;
};

// driver is the emulated device's state. A real driver is process-global
// too: this library is the driver.
struct driver {
	// Counters REPLAYD_EMU_STATS=1 prints when the context is released: how often the host
	// launched, copied and waited for the device.
	std::atomic<long> nLaunch{0}, nSync{0}, nHtoD{0}, nDtoH{0};
	std::mutex mu;
	context primary;
	std::map<uintptr_t, allocation> allocs;  // by user pointer
	std::set<stream*> streams;
	std::set<module*> modules;
	std::set<event*> events;
	std::atomic<uint64_t> launches{0};
	emu_schedule schedule = EMU_SHUFFLE;
	bool initialised = false;
};

driver& drv() {
	static driver* d = new driver;  // never destroyed: stream threads may outlive static destruction
	return *d;
}

thread_local context* t_current;

constexpr CUresult kOK = CUDA_SUCCESS;

void warn(const char* fmt, const char* a, const char* b = "") {
	fprintf(stderr, "replayd-emu: ");
	fprintf(stderr, fmt, a, b);
	fputc('\n', stderr);
}

CUresult need_context() {
	if (!drv().initialised) return CUDA_ERROR_NOT_INITIALIZED;
	if (!t_current || t_current->refs == 0) return CUDA_ERROR_INVALID_CONTEXT;
	return kOK;
}

// inside reports whether [p, p+n) lies in one live allocation (n may be 0
// at the allocation's end).
bool inside(uintptr_t p, size_t n) {
	auto& d = drv();
	std::lock_guard<std::mutex> l(d.mu);
	auto it = d.allocs.upper_bound(p);
	if (it == d.allocs.begin()) return false;
	--it;
	return p >= it->first && p + n <= it->first + it->second.size && p + n >= p;
}

void sync_all() {
	std::vector<stream*> ss;
	{
		std::lock_guard<std::mutex> l(drv().mu);
		ss.assign(drv().streams.begin(), drv().streams.end());
	}
	for (stream* s : ss) s->sync();
}

stream* as_stream(CUstream h) { return reinterpret_cast<stream*>(h); }

bool valid_stream(CUstream h) {
	std::lock_guard<std::mutex> l(drv().mu);
	return drv().streams.count(as_stream(h)) > 0;
}

// run queues fn on h; the legacy default stream (0) waits for every other
// stream and runs fn at once.
CUresult run(CUstream h, std::function<void()> fn) {
	if (!h) {
		sync_all();
		fn();
		return kOK;
	}
	if (!valid_stream(h)) return CUDA_ERROR_INVALID_HANDLE;
	as_stream(h)->push(std::move(fn));
	return kOK;
}

CUresult sync_stream(CUstream h) {
	drv().nSync++;
	if (!h) {
		sync_all();
		return kOK;
	}
	if (!valid_stream(h)) return CUDA_ERROR_INVALID_HANDLE;
	as_stream(h)->sync();
	return kOK;
}

void free_allocation(const allocation& a) { munmap(a.map, a.mapLen); }

// parse_ptx reads the entries of a PTX module: name, parameter kinds and
// .maxntid. Returns false with why set when the text is not PTX.
bool parse_ptx(const char* text, std::map<std::string, ptx_entry>& out, std::string& why) {
	std::string s(text);
	if (s.find(".version") == std::string::npos || s.find(".target") == std::string::npos) {
		why = "not PTX text (no .version/.target)";
		return false;
	}
	size_t tp = s.find(".target");
	int sm = 0;
	if (sscanf(s.c_str() + tp, ".target sm_%d", &sm) != 1) {
		why = "unreadable .target";
		return false;
	}
	if (sm > 90) {
		why = "PTX targets sm_" + std::to_string(sm) + ", newer than the emulated device (9.0)";
		return false;
	}
	for (size_t p = 0; (p = s.find(".entry ", p)) != std::string::npos;) {
		p += 7;
		size_t open = s.find('(', p);
		if (open == std::string::npos) break;
		std::string name = s.substr(p, open - p);
		while (!name.empty() && isspace((unsigned char)name.back())) name.pop_back();
		size_t close = s.find(')', open);
		ptx_entry e;
		std::string params = s.substr(open + 1, close - open - 1);
		for (size_t q = 0; (q = params.find(".param ", q)) != std::string::npos;) {
			q += 7;
			std::string ty = params.substr(q, 4);
			if (ty == ".u64" || ty == ".s64" || ty == ".b64") {
				e.sig += 'p';
			} else if (ty == ".u32" || ty == ".s32" || ty == ".b32") {
				e.sig += 'i';
			} else if (ty == ".f32") {
				e.sig += 'f';
			} else {
				e.sig += '?';
			}
		}
		size_t body = s.find('{', close);
		size_t mx = s.find(".maxntid", close);
		if (mx != std::string::npos && mx < body) sscanf(s.c_str() + mx, ".maxntid %u", &e.maxntid);
		out[name] = e;
		p = close;
	}
	return true;
}

int param_size(char c) { return c == 'p' ? 8 : 4; }

template <class T>
CUresult set(CUdeviceptr dst, T v, size_t count, CUstream s) {
	if (CUresult r = need_context()) return r;
	if (count == 0) return kOK;
	if (dst % sizeof(T) != 0 || !inside(dst, count * sizeof(T))) return CUDA_ERROR_INVALID_VALUE;
	return run(s, [dst, v, count] {
		emu_set_activity("cuMemset");
		T* p = (T*)dst;
		for (size_t i = 0; i < count; i++) p[i] = v;
		emu_set_activity(nullptr);
	});
}

}  // namespace

// ------------------------------------------------------------------ hooks

CUresult emu_enqueue(CUstream s, std::function<void()> fn) { return run(s, std::move(fn)); }

bool emu_has_current_context() { return need_context() == kOK; }

// --------------------------------------------------------------- the API

extern "C" {

CUresult cuInit(unsigned int flags) {
	if (flags != 0) return CUDA_ERROR_INVALID_VALUE;
	auto& d = drv();
	std::lock_guard<std::mutex> l(d.mu);
	if (const char* s = getenv("REPLAYD_EMU_SCHEDULE")) {
		std::string v(s);
		if (v == "forward") {
			d.schedule = EMU_FORWARD;
		} else if (v == "reverse") {
			d.schedule = EMU_REVERSE;
		} else if (v == "shuffle") {
			d.schedule = EMU_SHUFFLE;
		} else {
			warn("REPLAYD_EMU_SCHEDULE=%s: want forward, reverse or shuffle", s);
			return CUDA_ERROR_INVALID_VALUE;
		}
	}
	d.initialised = true;
	return kOK;
}

CUresult cuDriverGetVersion(int* v) {
	if (!v) return CUDA_ERROR_INVALID_VALUE;
	*v = 11080;  // reads PTX 7.8, like a CUDA 11.8 driver
	return kOK;
}

CUresult cuDeviceGetCount(int* n) {
	if (!drv().initialised) return CUDA_ERROR_NOT_INITIALIZED;
	if (!n) return CUDA_ERROR_INVALID_VALUE;
	*n = 1;
	return kOK;
}

CUresult cuDeviceGet(CUdevice* dev, int ordinal) {
	if (!drv().initialised) return CUDA_ERROR_NOT_INITIALIZED;
	if (!dev) return CUDA_ERROR_INVALID_VALUE;
	if (ordinal != 0) return CUDA_ERROR_INVALID_DEVICE;
	*dev = 0;
	return kOK;
}

CUresult cuDeviceGetName(char* name, int len, CUdevice dev) {
	if (dev != 0) return CUDA_ERROR_INVALID_DEVICE;
	if (!name || len <= 0) return CUDA_ERROR_INVALID_VALUE;
	snprintf(name, (size_t)len, "replayd CPU emulator, %d threads", emu_worker_threads());
	return kOK;
}

CUresult cuDeviceGetAttribute(int* v, CUdevice_attribute a, CUdevice dev) {
	if (dev != 0) return CUDA_ERROR_INVALID_DEVICE;
	if (!v) return CUDA_ERROR_INVALID_VALUE;
	switch (a) {
	case CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK: *v = 1024; break;
	case CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_X: *v = 1024; break;
	case CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Y: *v = 1024; break;
	case CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Z: *v = 64; break;
	case CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_X: *v = 0x7fffffff; break;
	case CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Y: *v = 65535; break;
	case CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Z: *v = 65535; break;
	case CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK: *v = 48 << 10; break;
	case CU_DEVICE_ATTRIBUTE_WARP_SIZE: *v = 32; break;
	case CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT: *v = emu_worker_threads(); break;
	case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR: *v = 9; break;
	case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR: *v = 0; break;
	case CU_DEVICE_ATTRIBUTE_CONCURRENT_KERNELS: *v = 1; break;
	case CU_DEVICE_ATTRIBUTE_UNIFIED_ADDRESSING: *v = 1; break;
	default: return CUDA_ERROR_NOT_SUPPORTED;
	}
	return kOK;
}

CUresult cuDeviceTotalMem(size_t* bytes, CUdevice dev) {
	if (dev != 0) return CUDA_ERROR_INVALID_DEVICE;
	if (!bytes) return CUDA_ERROR_INVALID_VALUE;
	struct sysinfo si;
	sysinfo(&si);
	*bytes = (size_t)si.totalram * si.mem_unit;
	return kOK;
}

CUresult cuMemGetInfo(size_t* freeB, size_t* total) {
	if (CUresult r = need_context()) return r;
	struct sysinfo si;
	sysinfo(&si);
	if (freeB) *freeB = (size_t)si.freeram * si.mem_unit;
	if (total) *total = (size_t)si.totalram * si.mem_unit;
	return kOK;
}

CUresult cuDevicePrimaryCtxRetain(CUcontext* ctx, CUdevice dev) {
	if (!drv().initialised) return CUDA_ERROR_NOT_INITIALIZED;
	if (dev != 0) return CUDA_ERROR_INVALID_DEVICE;
	if (!ctx) return CUDA_ERROR_INVALID_VALUE;
	std::lock_guard<std::mutex> l(drv().mu);
	drv().primary.refs++;
	*ctx = reinterpret_cast<CUcontext>(&drv().primary);
	return kOK;
}

// Releasing the last reference destroys the context: its memory, streams,
// modules and events go, as with a real driver.
CUresult cuDevicePrimaryCtxRelease(CUdevice dev) {
	if (dev != 0) return CUDA_ERROR_INVALID_DEVICE;
	auto& d = drv();
	std::unique_lock<std::mutex> l(d.mu);
	if (d.primary.refs == 0) return CUDA_ERROR_INVALID_CONTEXT;
	if (--d.primary.refs > 0) return kOK;
	// Go programs leave through exit_group, past atexit: report here.
	if (getenv("REPLAYD_EMU_STATS"))
		fprintf(stderr, "replayd-emu stats: launches=%ld syncs=%ld htod=%ld dtoh=%ld\n", d.nLaunch.load(),
		        d.nSync.load(), d.nHtoD.load(), d.nDtoH.load());
	std::set<stream*> ss;
	ss.swap(d.streams);
	l.unlock();
	for (stream* s : ss) delete s;  // drains first
	l.lock();
	for (auto& kv : d.allocs) free_allocation(kv.second);
	d.allocs.clear();
	for (module* m : d.modules) delete m;
	d.modules.clear();
	for (event* e : d.events) delete e;
	d.events.clear();
	return kOK;
}

CUresult cuCtxSetCurrent(CUcontext ctx) {
	if (!drv().initialised) return CUDA_ERROR_NOT_INITIALIZED;
	if (ctx && ctx != reinterpret_cast<CUcontext>(&drv().primary)) return CUDA_ERROR_INVALID_CONTEXT;
	t_current = reinterpret_cast<context*>(ctx);
	return kOK;
}

CUresult cuCtxGetCurrent(CUcontext* ctx) {
	if (!ctx) return CUDA_ERROR_INVALID_VALUE;
	*ctx = reinterpret_cast<CUcontext>(t_current);
	return kOK;
}

CUresult cuCtxGetDevice(CUdevice* dev) {
	if (CUresult r = need_context()) return r;
	*dev = 0;
	return kOK;
}

CUresult cuCtxSynchronize(void) {
	if (CUresult r = need_context()) return r;
	sync_all();
	return kOK;
}

// ----------------------------------------------------------------- memory

CUresult cuMemAlloc(CUdeviceptr* p, size_t bytes) {
	if (CUresult r = need_context()) return r;
	if (!p || bytes == 0) return CUDA_ERROR_INVALID_VALUE;
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t rounded = (bytes + 3) / 4 * 4;
	size_t len = (rounded + page - 1) / page * page + page;
	void* m = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (m == MAP_FAILED) return CUDA_ERROR_OUT_OF_MEMORY;
	char* guard = (char*)m + len - page;
	mprotect(guard, page, PROT_NONE);
	char* user = guard - rounded;
	memset(user, 0xff, rounded);  // device memory is not zeroed: make garbage visible (NaN, -1)
	std::lock_guard<std::mutex> l(drv().mu);
	drv().allocs[(uintptr_t)user] = allocation{(char*)m, len, bytes};
	*p = (CUdeviceptr)user;
	return kOK;
}

// Stream-ordered allocation: the memory exists at once (using it before
// the stream reaches the allocation is the caller's error, as on a GPU),
// and a free happens when the stream reaches it, without waiting for the
// device.
CUresult cuMemAllocAsync(CUdeviceptr* p, size_t bytes, CUstream s) {
	if (s && !valid_stream(s)) return CUDA_ERROR_INVALID_HANDLE;
	return cuMemAlloc(p, bytes);
}

CUresult cuMemFreeAsync(CUdeviceptr p, CUstream s) {
	if (CUresult r = need_context()) return r;
	if (!p) return kOK;
	{
		std::lock_guard<std::mutex> l(drv().mu);
		if (!drv().allocs.count((uintptr_t)p)) return CUDA_ERROR_INVALID_VALUE;
	}
	return run(s, [p] {
		std::lock_guard<std::mutex> l(drv().mu);
		auto it = drv().allocs.find((uintptr_t)p);
		if (it == drv().allocs.end()) emu_fatal("cuMemFreeAsync: %#lx freed twice", (unsigned long)p);
		free_allocation(it->second);
		drv().allocs.erase(it);
	});
}

// The default memory pool: one per device; its attributes only matter to
// a real allocator, so they are accepted and kept.
CUresult cuDeviceGetDefaultMemPool(CUmemoryPool* pool, CUdevice dev) {
	if (dev != 0) return CUDA_ERROR_INVALID_DEVICE;
	if (!pool) return CUDA_ERROR_INVALID_VALUE;
	static int the_pool;
	*pool = reinterpret_cast<CUmemoryPool>(&the_pool);
	return kOK;
}

CUresult cuMemPoolSetAttribute(CUmemoryPool pool, CUmemPool_attribute attr, void* value) {
	CUmemoryPool def;
	cuDeviceGetDefaultMemPool(&def, 0);
	if (pool != def || !value) return CUDA_ERROR_INVALID_VALUE;
	if (attr != CU_MEMPOOL_ATTR_RELEASE_THRESHOLD) return CUDA_ERROR_NOT_SUPPORTED;
	return kOK;
}

CUresult cuMemFree(CUdeviceptr p) {
	if (CUresult r = need_context()) return r;
	if (!p) return kOK;
	sync_all();  // as cudaFree: no kernel may still use it
	std::lock_guard<std::mutex> l(drv().mu);
	auto it = drv().allocs.find((uintptr_t)p);
	if (it == drv().allocs.end()) return CUDA_ERROR_INVALID_VALUE;
	free_allocation(it->second);
	drv().allocs.erase(it);
	return kOK;
}

static CUresult copy_in(CUdeviceptr dst, const void* src, size_t n, CUstream s) {
	if (CUresult r = need_context()) return r;
	if (n == 0) return kOK;
	if (!src || !inside(dst, n)) return CUDA_ERROR_INVALID_VALUE;
	drv().nHtoD++;
	// From pageable memory the driver stages the bytes before returning.
	auto staged = std::make_shared<std::vector<char>>((const char*)src, (const char*)src + n);
	return run(s, [dst, staged] {
		emu_set_activity("cuMemcpyHtoD");
		memcpy((void*)dst, staged->data(), staged->size());
		emu_set_activity(nullptr);
	});
}

static CUresult copy_out(void* dst, CUdeviceptr src, size_t n, CUstream s) {
	if (CUresult r = need_context()) return r;
	if (n == 0) return kOK;
	if (!dst || !inside(src, n)) return CUDA_ERROR_INVALID_VALUE;
	drv().nDtoH++;
	CUresult r = run(s, [dst, src, n] {
		emu_set_activity("cuMemcpyDtoH");
		memcpy(dst, (const void*)src, n);
		emu_set_activity(nullptr);
	});
	if (r) return r;
	return sync_stream(s);  // to pageable memory the copy is synchronous
}

static CUresult copy_dd(CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream s) {
	if (CUresult r = need_context()) return r;
	if (n == 0) return kOK;
	if (!inside(dst, n) || !inside(src, n)) return CUDA_ERROR_INVALID_VALUE;
	return run(s, [dst, src, n] {
		emu_set_activity("cuMemcpyDtoD");
		memmove((void*)dst, (const void*)src, n);
		emu_set_activity(nullptr);
	});
}

CUresult cuMemcpyHtoD(CUdeviceptr dst, const void* src, size_t n) { return copy_in(dst, src, n, 0); }
CUresult cuMemcpyHtoDAsync(CUdeviceptr dst, const void* src, size_t n, CUstream s) { return copy_in(dst, src, n, s); }
CUresult cuMemcpyDtoH(void* dst, CUdeviceptr src, size_t n) { return copy_out(dst, src, n, 0); }
CUresult cuMemcpyDtoHAsync(void* dst, CUdeviceptr src, size_t n, CUstream s) { return copy_out(dst, src, n, s); }
CUresult cuMemcpyDtoD(CUdeviceptr dst, CUdeviceptr src, size_t n) { return copy_dd(dst, src, n, 0); }
CUresult cuMemcpyDtoDAsync(CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream s) { return copy_dd(dst, src, n, s); }

CUresult cuMemsetD8(CUdeviceptr dst, unsigned char v, size_t n) { return set<unsigned char>(dst, v, n, 0); }
CUresult cuMemsetD8Async(CUdeviceptr dst, unsigned char v, size_t n, CUstream s) { return set<unsigned char>(dst, v, n, s); }
CUresult cuMemsetD32(CUdeviceptr dst, unsigned int v, size_t n) { return set<unsigned int>(dst, v, n, 0); }
CUresult cuMemsetD32Async(CUdeviceptr dst, unsigned int v, size_t n, CUstream s) { return set<unsigned int>(dst, v, n, s); }

// ---------------------------------------------------------------- streams

CUresult cuStreamCreate(CUstream* s, unsigned int flags) {
	if (CUresult r = need_context()) return r;
	if (!s || flags > CU_STREAM_NON_BLOCKING) return CUDA_ERROR_INVALID_VALUE;
	stream* st = new stream;
	std::lock_guard<std::mutex> l(drv().mu);
	drv().streams.insert(st);
	*s = reinterpret_cast<CUstream>(st);
	return kOK;
}

CUresult cuStreamDestroy(CUstream s) {
	stream* st = as_stream(s);
	{
		std::lock_guard<std::mutex> l(drv().mu);
		if (!drv().streams.erase(st)) return CUDA_ERROR_INVALID_HANDLE;
	}
	delete st;  // finishes the queued work first
	return kOK;
}

CUresult cuStreamSynchronize(CUstream s) { return sync_stream(s); }

CUresult cuStreamQuery(CUstream s) {
	if (!s) return kOK;
	if (!valid_stream(s)) return CUDA_ERROR_INVALID_HANDLE;
	return as_stream(s)->done() ? kOK : CUDA_ERROR_NOT_READY;
}

// ----------------------------------------------------------------- events

CUresult cuEventCreate(CUevent* e, unsigned int) {
	if (CUresult r = need_context()) return r;
	if (!e) return CUDA_ERROR_INVALID_VALUE;
	event* ev = new event;
	std::lock_guard<std::mutex> l(drv().mu);
	drv().events.insert(ev);
	*e = reinterpret_cast<CUevent>(ev);
	return kOK;
}

static event* as_event(CUevent e) {
	std::lock_guard<std::mutex> l(drv().mu);
	event* ev = reinterpret_cast<event*>(e);
	return drv().events.count(ev) ? ev : nullptr;
}

CUresult cuEventRecord(CUevent e, CUstream s) {
	event* ev = as_event(e);
	if (!ev) return CUDA_ERROR_INVALID_HANDLE;
	{
		std::lock_guard<std::mutex> l(ev->mu);
		ev->pending = true;
	}
	return run(s, [ev] {
		std::lock_guard<std::mutex> l(ev->mu);
		ev->at = std::chrono::steady_clock::now();
		ev->recorded = true;
		ev->pending = false;
		ev->cv.notify_all();
	});
}

CUresult cuEventSynchronize(CUevent e) {
	event* ev = as_event(e);
	if (!ev) return CUDA_ERROR_INVALID_HANDLE;
	std::unique_lock<std::mutex> l(ev->mu);
	ev->cv.wait(l, [&] { return !ev->pending; });
	return kOK;
}

CUresult cuEventQuery(CUevent e) {
	event* ev = as_event(e);
	if (!ev) return CUDA_ERROR_INVALID_HANDLE;
	std::lock_guard<std::mutex> l(ev->mu);
	return ev->pending ? CUDA_ERROR_NOT_READY : kOK;
}

CUresult cuEventElapsedTime(float* ms, CUevent a, CUevent b) {
	event *ea = as_event(a), *eb = as_event(b);
	if (!ea || !eb || !ms) return CUDA_ERROR_INVALID_HANDLE;
	std::scoped_lock l(ea->mu, eb->mu);
	if (ea->pending || eb->pending) return CUDA_ERROR_NOT_READY;
	if (!ea->recorded || !eb->recorded) return CUDA_ERROR_INVALID_HANDLE;
	*ms = std::chrono::duration<float, std::milli>(eb->at - ea->at).count();
	return kOK;
}

CUresult cuEventDestroy(CUevent e) {
	event* ev = reinterpret_cast<event*>(e);
	{
		std::lock_guard<std::mutex> l(drv().mu);
		if (!drv().events.erase(ev)) return CUDA_ERROR_INVALID_HANDLE;
	}
	cuEventSynchronize(e);
	delete ev;
	return kOK;
}

// ---------------------------------------------------------------- modules

CUresult cuModuleLoadData(CUmodule* mod, const void* image) {
	if (CUresult r = need_context()) return r;
	if (!mod || !image) return CUDA_ERROR_INVALID_VALUE;
	std::map<std::string, ptx_entry> entries;
	std::string why;
	if (!parse_ptx((const char*)image, entries, why)) {
		warn("cuModuleLoadData: %s", why.c_str());
		return CUDA_ERROR_INVALID_IMAGE;
	}
	auto m = std::make_unique<module>();
	std::map<std::string, const emu_kernel*> host;
	for (const emu_kernel& k : emu_registry()) host[k.name] = &k;
	for (auto& [name, e] : entries) {
		auto h = host.find(name);
		if (h == host.end()) continue;  // cuModuleGetFunction reports it
		if (h->second->sig != e.sig) {
			fprintf(stderr,
			        "replayd-emu: cuModuleLoadData: kernel %s has parameters %s in the PTX but %s in kernels.cu "
			        "(p pointer, i int, f float): kernels.ptx is stale, run make ptx\n",
			        name.c_str(), e.sig.c_str(), h->second->sig.c_str());
			return CUDA_ERROR_INVALID_IMAGE;
		}
		m->funcs[name] = std::make_unique<function>(function{h->second, e.maxntid ? e.maxntid : 1024});
	}
	module* raw = m.release();
	std::lock_guard<std::mutex> l(drv().mu);
	drv().modules.insert(raw);
	*mod = reinterpret_cast<CUmodule>(raw);
	return kOK;
}

CUresult cuModuleGetFunction(CUfunction* fn, CUmodule mod, const char* name) {
	if (CUresult r = need_context()) return r;
	if (!fn || !name) return CUDA_ERROR_INVALID_VALUE;
	module* m = reinterpret_cast<module*>(mod);
	{
		std::lock_guard<std::mutex> l(drv().mu);
		if (!drv().modules.count(m)) return CUDA_ERROR_INVALID_HANDLE;
	}
	auto it = m->funcs.find(name);
	if (it == m->funcs.end()) {
		bool inHost = false;
		for (const emu_kernel& k : emu_registry()) inHost = inHost || k.name == name;
		warn(inHost ? "cuModuleGetFunction: %s is not in the PTX (run make ptx)"
		            : "cuModuleGetFunction: %s is not built for the emulator (gpu/emu/kernels_host.cc)",
		     name);
		return CUDA_ERROR_NOT_FOUND;
	}
	*fn = reinterpret_cast<CUfunction>(it->second.get());
	return kOK;
}

CUresult cuModuleUnload(CUmodule mod) {
	module* m = reinterpret_cast<module*>(mod);
	std::lock_guard<std::mutex> l(drv().mu);
	if (!drv().modules.erase(m)) return CUDA_ERROR_INVALID_HANDLE;
	delete m;
	return kOK;
}

// ----------------------------------------------------------------- launch

CUresult cuLaunchKernel(CUfunction f, unsigned int gx, unsigned int gy, unsigned int gz, unsigned int bx,
                        unsigned int by, unsigned int bz, unsigned int shared, CUstream s, void** params,
                        void** extra) {
	if (CUresult r = need_context()) return r;
	function* fn = reinterpret_cast<function*>(f);
	if (!fn) return CUDA_ERROR_INVALID_HANDLE;
	const emu_kernel* k = fn->k;
	if (extra) {
		warn("cuLaunchKernel %s: the extra parameter form is not emulated", k->name.c_str());
		return CUDA_ERROR_NOT_SUPPORTED;
	}
	if (shared) {
		warn("cuLaunchKernel %s: dynamic shared memory is not emulated", k->name.c_str());
		return CUDA_ERROR_NOT_SUPPORTED;
	}
	if (gx == 0 || gy == 0 || gz == 0 || bx == 0 || by == 0 || bz == 0 || gx > 0x7fffffffu || gy > 65535 ||
	    gz > 65535 || bx > 1024 || by > 1024 || bz > 64)
		return CUDA_ERROR_INVALID_VALUE;
	unsigned threads = bx * by * bz;
	if (threads > 1024) return CUDA_ERROR_INVALID_VALUE;
	if (threads > fn->maxThreads) {
		fprintf(stderr, "replayd-emu: cuLaunchKernel %s: %u threads per block, __launch_bounds__ allows %u\n",
		        k->name.c_str(), threads, fn->maxThreads);
		return CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES;
	}
	size_t np = k->sig.size();
	if (np && !params) return CUDA_ERROR_INVALID_VALUE;
	// The driver copies the arguments at launch; so does this.
	auto slots = std::make_shared<std::vector<uint64_t>>(np);
	for (size_t i = 0; i < np; i++) {
		memcpy(&(*slots)[i], params[i], (size_t)param_size(k->sig[i]));
		if (k->sig[i] == 'p') {
			uintptr_t p = (uintptr_t)(*slots)[i];
			if (p && !inside(p, 0)) {
				fprintf(stderr, "replayd-emu: cuLaunchKernel %s: argument %zu = %#lx is not device memory\n",
				        k->name.c_str(), i, (unsigned long)p);
				return CUDA_ERROR_INVALID_VALUE;
			}
		}
	}
	auto ptrs = std::make_shared<std::vector<void*>>(np);
	for (size_t i = 0; i < np; i++) (*ptrs)[i] = &(*slots)[i];
	auto& d = drv();
	d.nLaunch++;
	emu_grid g{k->name.c_str(), k->call, ptrs->data(), emu_dim3{gx, gy, gz}, emu_dim3{bx, by, bz}, d.schedule,
	           d.launches.fetch_add(1) * 0x9e3779b97f4a7c15ull + 1};
	return run(s, [g, slots, ptrs] { emu_run_grid(g); });
}

}  // extern "C"
