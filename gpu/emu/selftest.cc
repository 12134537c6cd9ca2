// Self-test of the CPU emulator (make gpu-emu-test runs it before the CUDA
// backend's Go tests run on the emulator): shows that every check the
// emulator claims fires on a kernel or a call that breaks it, and that
// correct kernels give the same result under every thread schedule.
//
//   selftest PTX        all tests; PTX is gpu/kernels/kernels.ptx
//   selftest --case X   one hostile case, expected to abort (run by the above)
#include <cublas_v2.h>
#include <cuda.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <cmath>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "device.h"
#include "exec.h"
#include "include/mma.h"

namespace {

int failures = 0;

#define EXPECT(cond, ...)                          \
	do {                                           \
		if (!(cond)) {                             \
			failures++;                            \
			fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
			fprintf(stderr, __VA_ARGS__);          \
			fputc('\n', stderr);                   \
		}                                          \
	} while (0)

// ---------------------------------------------------------- test kernels

// ids: every thread of a 3-D grid of 3-D blocks writes its linear id once.
void k_ids(int* out) {
	long b = blockIdx.x + (long)gridDim.x * (blockIdx.y + (long)gridDim.y * blockIdx.z);
	long t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
	long n = (long)blockDim.x * blockDim.y * blockDim.z;
	out[b * n + t] += (int)(b * n + t) + 1;
}

// reduce: a shared-memory tree per block, correct barriers.
void k_reduce(const float* x, float* out) {
	__shared__ float sh[128];
	sh[threadIdx.x] = x[blockIdx.x * 128 + threadIdx.x];
	__syncthreads();
	for (int s = 64; s > 0; s >>= 1) {
		if (threadIdx.x < (unsigned)s) sh[threadIdx.x] += sh[threadIdx.x + s];
		__syncthreads();
	}
	if (threadIdx.x == 0) out[blockIdx.x] = sh[0];
}

// racy: reads a neighbour's shared slot with no barrier after the write.
void k_racy(int* out) {
	__shared__ int sh[64];
	sh[threadIdx.x] = (int)threadIdx.x + 1;
	out[threadIdx.x] = sh[(threadIdx.x + 1) % 64];
}

void k_divergent(int*) {
	if (threadIdx.x % 2) {
		__syncthreads();
	} else {
		__syncthreads();
	}
}

void k_early_exit(int*) {
	if (threadIdx.x == 3) return;
	__syncthreads();
}

// misaligned_wmma loads a fragment from a pointer 16 bytes past a 256-bit
// boundary, which WMMA forbids.
void k_misaligned_wmma(int*) {
	__shared__ __align__(32) __nv_bfloat16 tile[16 * 16 + 16];
	nvcuda::wmma::fragment<nvcuda::wmma::matrix_a, 16, 16, 16, __nv_bfloat16, nvcuda::wmma::row_major> a;
	nvcuda::wmma::load_matrix_sync(a, tile + 8, 16);
}

template <void (*K)(int*)>
void call_i(void** p) {
	K(*(int**)p[0]);
}
void call_reduce(void** p) { k_reduce(*(const float**)p[0], *(float**)p[1]); }

void run(const char* name, void (*call)(void**), void** params, emu_dim3 grid, emu_dim3 block, emu_schedule s) {
	emu_run_grid(emu_grid{name, call, params, grid, block, s, 42});
}

// ------------------------------------------------------------ the engine

void test_indices() {
	emu_dim3 grid{3, 2, 2}, block{4, 3, 2};
	int n = 3 * 2 * 2 * 4 * 3 * 2;
	for (emu_schedule s : {EMU_FORWARD, EMU_REVERSE, EMU_SHUFFLE}) {
		std::vector<int> out(n, 0);
		int* p = out.data();
		void* params[] = {&p};
		run("ids", call_i<k_ids>, params, grid, block, s);
		for (int i = 0; i < n; i++) EXPECT(out[i] == i + 1, "ids: out[%d] = %d, want %d (schedule %d)", i, out[i], i + 1, s);
	}
}

void test_barriers() {
	const int blocks = 37;
	std::vector<float> x(blocks * 128), want(blocks);
	for (int i = 0; i < blocks * 128; i++) x[i] = (float)((i * 7919) % 1000) / 8;  // exact in float
	for (int b = 0; b < blocks; b++)
		for (int i = 0; i < 128; i++) want[b] += x[b * 128 + i];
	for (emu_schedule s : {EMU_FORWARD, EMU_REVERSE, EMU_SHUFFLE}) {
		std::vector<float> out(blocks, -1);
		const float* xp = x.data();
		float* op = out.data();
		void* params[] = {&xp, &op};
		run("reduce", call_reduce, params, emu_dim3{blocks, 1, 1}, emu_dim3{128, 1, 1}, s);
		for (int b = 0; b < blocks; b++) EXPECT(out[b] == want[b], "reduce block %d: %g, want %g", b, out[b], want[b]);
	}
}

// A race must show as a schedule-dependent result: that is how the Go
// tests, which run under the shuffled schedule, see a missing barrier.
void test_race_visible() {
	std::vector<int> fwd(64), rev(64);
	int* p = fwd.data();
	void* params[] = {&p};
	run("racy", call_i<k_racy>, params, emu_dim3{1, 1, 1}, emu_dim3{64, 1, 1}, EMU_FORWARD);
	p = rev.data();
	run("racy", call_i<k_racy>, params, emu_dim3{1, 1, 1}, emu_dim3{64, 1, 1}, EMU_REVERSE);
	EXPECT(fwd != rev, "a missing barrier gave the same result under forward and reverse schedules");
}

// ------------------------------------------------------------- the driver

#define CK(call)                                                                        \
	do {                                                                                \
		CUresult r_ = (call);                                                           \
		if (r_ != CUDA_SUCCESS) {                                                       \
			fprintf(stderr, "FAIL %s:%d: %s = %d\n", __FILE__, __LINE__, #call, (int)r_); \
			exit(1);                                                                    \
		}                                                                               \
	} while (0)

std::string read_file(const char* path) {
	std::ifstream f(path);
	std::stringstream ss;
	ss << f.rdbuf();
	return ss.str();
}

struct setup {
	CUcontext ctx;
	CUstream stream;
	CUmodule mod;
};

setup open_device(const std::string& ptx) {
	setup s;
	CK(cuInit(0));
	CUdeviceptr p;
	EXPECT(cuMemAlloc(&p, 16) == CUDA_ERROR_INVALID_CONTEXT, "cuMemAlloc without a current context succeeded");
	CK(cuDevicePrimaryCtxRetain(&s.ctx, 0));
	CK(cuCtxSetCurrent(s.ctx));
	CK(cuStreamCreate(&s.stream, CU_STREAM_NON_BLOCKING));
	CK(cuModuleLoadData(&s.mod, ptx.c_str()));
	return s;
}

void test_memory(const setup& s) {
	CUdeviceptr p;
	CK(cuMemAlloc(&p, 40));
	std::vector<unsigned> h(10, 0);
	CK(cuMemcpyDtoH(h.data(), p, 40));
	EXPECT(h[0] == 0xffffffffu && h[9] == 0xffffffffu, "new device memory is not filled with 0xff");
	std::vector<float> ten(10, 1.f), eleven(11, 1.f);
	EXPECT(cuMemcpyHtoD(p, eleven.data(), 44) == CUDA_ERROR_INVALID_VALUE, "a copy past the allocation was accepted");
	EXPECT(cuMemcpyHtoD(p + 4, ten.data(), 40) == CUDA_ERROR_INVALID_VALUE, "an offset copy past the end was accepted");
	EXPECT(cuMemsetD32Async(p, 0, 11, s.stream) == CUDA_ERROR_INVALID_VALUE, "a memset past the end was accepted");
	CK(cuMemcpyHtoDAsync(p, ten.data(), 40, s.stream));
	ten.assign(10, 5.f);  // staged: overwriting the source after the call must not matter
	std::vector<float> back(10);
	CK(cuMemcpyDtoHAsync(back.data(), p, 40, s.stream));
	EXPECT(back[0] == 1.f && back[9] == 1.f, "async copies out of order or not staged: %g %g", back[0], back[9]);
	CK(cuMemFree(p));
	EXPECT(cuMemFree(p) == CUDA_ERROR_INVALID_VALUE, "a double free was accepted");
}

void test_module(const setup& s, const std::string& ptx) {
	CUfunction f;
	CK(cuModuleGetFunction(&f, s.mod, "axpy_f32"));
	EXPECT(cuModuleGetFunction(&f, s.mod, "no_such_kernel") == CUDA_ERROR_NOT_FOUND, "an unknown kernel was found");
	// A PTX whose axpy_f32 takes a double where kernels.cu has a float: stale.
	std::string bad = ptx;
	size_t e = bad.find(".entry axpy_f32(");
	size_t f32 = bad.find(".param .f32", e);
	EXPECT(e != std::string::npos && f32 != std::string::npos, "kernels.ptx has no axpy_f32 with a float parameter");
	bad.replace(f32, 11, ".param .f64");
	CUmodule m;
	EXPECT(cuModuleLoadData(&m, bad.c_str()) == CUDA_ERROR_INVALID_IMAGE, "a PTX with a changed signature loaded");
	std::string newer = ptx;
	size_t t = newer.find(".target sm_");
	newer.replace(t, 13, ".target sm_99");
	EXPECT(cuModuleLoadData(&m, newer.c_str()) == CUDA_ERROR_INVALID_IMAGE, "a PTX for a newer GPU loaded");
}

void test_launch(const setup& s) {
	int n = 1000;
	CUdeviceptr d, x;
	CK(cuMemAlloc(&d, n * 4));
	CK(cuMemAlloc(&x, n * 4));
	std::vector<float> hd(n), hx(n);
	for (int i = 0; i < n; i++) hd[i] = (float)i, hx[i] = 1;
	CK(cuMemcpyHtoDAsync(d, hd.data(), n * 4, s.stream));
	CK(cuMemcpyHtoDAsync(x, hx.data(), n * 4, s.stream));
	CUfunction axpy, attn;
	CK(cuModuleGetFunction(&axpy, s.mod, "axpy_f32"));
	// Parameters in 8-byte slots, as the Go backend passes them.
	uint64_t a0 = d, a2 = x, a1 = 0, a3 = (uint64_t)n;
	float two = 2;
	memcpy(&a1, &two, 4);
	void* params[] = {&a0, &a1, &a2, &a3};
	CK(cuLaunchKernel(axpy, 3, 1, 1, 256, 1, 1, 0, s.stream, params, nullptr));
	std::vector<float> out(n);
	CK(cuMemcpyDtoHAsync(out.data(), d, n * 4, s.stream));
	for (int i = 0; i < n; i++) EXPECT(out[i] == i + 2.f, "axpy out[%d] = %g", i, out[i]);
	EXPECT(cuLaunchKernel(axpy, 1, 1, 1, 2048, 1, 1, 0, s.stream, params, nullptr) == CUDA_ERROR_INVALID_VALUE,
	       "a 2048-thread block was accepted");
	uint64_t host = (uint64_t)(uintptr_t)hd.data();
	void* bad[] = {&host, &a1, &a2, &a3};
	EXPECT(cuLaunchKernel(axpy, 1, 1, 1, 256, 1, 1, 0, s.stream, bad, nullptr) == CUDA_ERROR_INVALID_VALUE,
	       "a host pointer argument was accepted");
	// attn_fwd_16 is __launch_bounds__(64): .maxntid in the PTX.
	CK(cuModuleGetFunction(&attn, s.mod, "attn_fwd_16"));
	EXPECT(cuLaunchKernel(attn, 1, 1, 1, 128, 1, 1, 0, s.stream, params, nullptr) == CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES,
	       "a launch beyond __launch_bounds__ was accepted");
	CUevent e0, e1;
	CK(cuEventCreate(&e0, 0));
	CK(cuEventCreate(&e1, 0));
	CK(cuEventRecord(e0, s.stream));
	CK(cuLaunchKernel(axpy, 3, 1, 1, 256, 1, 1, 0, s.stream, params, nullptr));
	CK(cuEventRecord(e1, s.stream));
	CK(cuEventSynchronize(e1));
	float ms = -1;
	CK(cuEventElapsedTime(&ms, e0, e1));
	EXPECT(ms >= 0, "elapsed time %g ms", ms);
	CK(cuMemFree(d));
	CK(cuMemFree(x));
}

// gemm_ref is the column-major definition, in double.
void gemm_ref(bool ta, bool tb, int m, int n, int k, float alpha, const std::vector<float>& A, int lda,
              const std::vector<float>& B, int ldb, float beta, std::vector<float>& C, int ldc) {
	for (int j = 0; j < n; j++)
		for (int i = 0; i < m; i++) {
			double acc = 0;
			for (int l = 0; l < k; l++)
				acc += (double)(ta ? A[l + i * lda] : A[i + l * lda]) * (tb ? B[j + l * ldb] : B[l + j * ldb]);
			C[i + j * ldc] = (float)(alpha * acc + beta * C[i + j * ldc]);
		}
}

void test_cublas(const setup& s) {
	cublasHandle_t h;
	EXPECT(cublasCreate_v2(&h) == CUBLAS_STATUS_SUCCESS, "cublasCreate");
	cublasSetStream_v2(h, (cudaStream_t)s.stream);
	int m = 13, n = 7, k = 9;
	for (int ta = 0; ta < 2; ta++)
		for (int tb = 0; tb < 2; tb++) {
			int lda = (ta ? k : m) + 3, ldb = (tb ? n : k) + 2, ldc = m + 1;
			std::vector<float> A(lda * (ta ? m : k)), B(ldb * (tb ? k : n)), C(ldc * n), want;
			for (size_t i = 0; i < A.size(); i++) A[i] = (float)((int)(i * 37 % 17) - 8) / 4;
			for (size_t i = 0; i < B.size(); i++) B[i] = (float)((int)(i * 53 % 13) - 6) / 2;
			for (size_t i = 0; i < C.size(); i++) C[i] = (float)(i % 5);
			want = C;
			gemm_ref(ta, tb, m, n, k, 1.5f, A, lda, B, ldb, 0.5f, want, ldc);
			CUdeviceptr dA, dB, dC;
			CK(cuMemAlloc(&dA, A.size() * 4));
			CK(cuMemAlloc(&dB, B.size() * 4));
			CK(cuMemAlloc(&dC, C.size() * 4));
			CK(cuMemcpyHtoD(dA, A.data(), A.size() * 4));
			CK(cuMemcpyHtoD(dB, B.data(), B.size() * 4));
			CK(cuMemcpyHtoD(dC, C.data(), C.size() * 4));
			float alpha = 1.5f, beta = 0.5f;
			cublasStatus_t st = cublasGemmEx(h, ta ? CUBLAS_OP_T : CUBLAS_OP_N, tb ? CUBLAS_OP_T : CUBLAS_OP_N, m, n, k,
			                                 &alpha, (void*)dA, CUDA_R_32F, lda, (void*)dB, CUDA_R_32F, ldb, &beta,
			                                 (void*)dC, CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
			EXPECT(st == CUBLAS_STATUS_SUCCESS, "gemm status %d", (int)st);
			CK(cuMemcpyDtoHAsync(C.data(), dC, C.size() * 4, s.stream));
			for (size_t i = 0; i < C.size(); i++)  // small integers / 8: exact
				EXPECT(C[i] == want[i], "gemm ta=%d tb=%d C[%zu] = %g, want %g", ta, tb, i, C[i], want[i]);
			st = cublasGemmEx(h, ta ? CUBLAS_OP_T : CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &alpha, (void*)dA, CUDA_R_32F,
			                  (ta ? k : m) - 1, (void*)dB, CUDA_R_32F, ldb, &beta, (void*)dC, CUDA_R_32F, ldc,
			                  CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
			EXPECT(st == CUBLAS_STATUS_INVALID_VALUE, "a too small lda gave status %d", (int)st);
			cuMemFree(dA);
			cuMemFree(dB);
			cuMemFree(dC);
		}
	// FAST_16BF rounds inputs to bfloat16: 1 + 2^-10 becomes 1, 1 + 2^-7 stays.
	float a[2] = {1 + 1.f / 1024, 1 + 1.f / 128}, b[1] = {3}, c[2];
	CUdeviceptr dA, dB, dC;
	CK(cuMemAlloc(&dA, 8));
	CK(cuMemAlloc(&dB, 4));
	CK(cuMemAlloc(&dC, 8));
	CK(cuMemcpyHtoD(dA, a, 8));
	CK(cuMemcpyHtoD(dB, b, 4));
	float one = 1, zero = 0;
	for (int ct : {CUBLAS_COMPUTE_32F, CUBLAS_COMPUTE_32F_FAST_16BF}) {
		cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 1, 1, &one, (void*)dA, CUDA_R_32F, 2, (void*)dB, CUDA_R_32F, 1,
		             &zero, (void*)dC, CUDA_R_32F, 2, (cublasComputeType_t)ct, CUBLAS_GEMM_DEFAULT);
		CK(cuMemcpyDtoHAsync(c, dC, 8, s.stream));
		float w0 = ct == CUBLAS_COMPUTE_32F ? a[0] * 3 : 3.f;
		EXPECT(c[0] == w0 && c[1] == a[1] * 3, "compute type %d: %g %g, want %g %g", ct, c[0], c[1], w0, a[1] * 3);
	}
	cublasDestroy_v2(h);
}

// ---------------------------------------------------------- hostile cases

int hostile(const char* name, const char* ptxPath) {
	std::vector<int> buf(64);
	int* p = buf.data();
	void* params[] = {&p};
	std::string c(name);
	if (c == "divergent") {
		run("divergent", call_i<k_divergent>, params, emu_dim3{1, 1, 1}, emu_dim3{64, 1, 1}, EMU_FORWARD);
	} else if (c == "early-exit") {
		run("early_exit", call_i<k_early_exit>, params, emu_dim3{1, 1, 1}, emu_dim3{64, 1, 1}, EMU_FORWARD);
	} else if (c == "misaligned-wmma") {
		run("misaligned_wmma", call_i<k_misaligned_wmma>, params, emu_dim3{1, 1, 1}, emu_dim3{32, 1, 1}, EMU_FORWARD);
	} else if (c == "out-of-bounds") {
		setup s = open_device(read_file(ptxPath));
		CUdeviceptr d, x;
		CK(cuMemAlloc(&d, 1000 * 4));
		CK(cuMemAlloc(&x, 1024 * 4));
		CUfunction axpy;
		CK(cuModuleGetFunction(&axpy, s.mod, "axpy_f32"));
		uint64_t a0 = d, a2 = x, a1 = 0, a3 = 1024;  // n larger than d
		void* pr[] = {&a0, &a1, &a2, &a3};
		CK(cuLaunchKernel(axpy, 4, 1, 1, 256, 1, 1, 0, s.stream, pr, nullptr));
		CK(cuStreamSynchronize(s.stream));
	}
	fprintf(stderr, "hostile case %s did not abort\n", name);
	return 0;
}

void expect_abort(const char* self, const char* ptx, const char* name, const char* message) {
	std::string cmd = std::string(self) + " --case " + name + " " + ptx + " 2>&1";
	FILE* f = popen(cmd.c_str(), "r");
	std::string out;
	char line[512];
	while (f && fgets(line, sizeof line, f)) out += line;
	int st = f ? pclose(f) : -1;
	bool died = st != -1 && (WIFSIGNALED(st) || (WIFEXITED(st) && WEXITSTATUS(st) != 0));
	EXPECT(died, "hostile case %s exited cleanly:\n%s", name, out.c_str());
	EXPECT(out.find(message) != std::string::npos, "hostile case %s: no \"%s\" in:\n%s", name, message, out.c_str());
}

}  // namespace

int main(int argc, char** argv) {
	if (argc == 4 && std::string(argv[1]) == "--case") return hostile(argv[2], argv[3]);
	if (argc != 2) {
		fprintf(stderr, "usage: %s PATH/kernels.ptx\n", argv[0]);
		return 2;
	}
	std::string ptx = read_file(argv[1]);
	EXPECT(!ptx.empty(), "cannot read %s", argv[1]);
	test_indices();
	test_barriers();
	test_race_visible();
	setup s = open_device(ptx);
	test_memory(s);
	test_module(s, ptx);
	test_launch(s);
	test_cublas(s);
	expect_abort(argv[0], argv[1], "divergent", "divergent __syncthreads");
	expect_abort(argv[0], argv[1], "early-exit", "returned without reaching it");
	expect_abort(argv[0], argv[1], "out-of-bounds", "out-of-bounds access");
	expect_abort(argv[0], argv[1], "misaligned-wmma", "must be 256-bit aligned");
	if (failures) {
		fprintf(stderr, "emu selftest: %d failures\n", failures);
		return 1;
	}
	fprintf(stderr, "emu selftest: ok\n");
	return 0;
}
