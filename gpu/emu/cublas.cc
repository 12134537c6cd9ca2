// The slice of cuBLAS replayd's CUDA backend loads with dlopen (handle,
// stream, cublasGemmEx on float32 matrices), implemented on the CPU for the
// emulator (see driver.cc), as libcublas.so in the emulator's directory.
//
// It follows the cuBLAS documentation, not replayd's code: column-major
// operands, op(A) m×k, op(B) k×n, the leading-dimension rules cuBLAS
// enforces (CUBLAS_STATUS_INVALID_VALUE otherwise), beta == 0 meaning C is
// not read, and the compute types' rounding of the inputs: FAST_16BF
// rounds A and B to bfloat16, FAST_TF32 to TF32 (round to nearest even),
// accumulation in float32 in k order. So the backend's row-major to
// column-major mapping is checked against an independent statement of it.
#include <cublas_v2.h>
#include <string.h>

#include <cstdint>
#include <vector>

#include "emu.h"

namespace {

struct handle {
	CUstream stream = nullptr;
};

float round_bits(float x, int dropped) {
	uint32_t u;
	memcpy(&u, &x, 4);
	if ((u & 0x7f800000u) == 0x7f800000u) return x;  // inf, nan
	uint32_t half = (1u << (dropped - 1)) - 1;
	u += half + ((u >> dropped) & 1);
	u &= ~((1u << dropped) - 1);
	memcpy(&x, &u, 4);
	return x;
}

}  // namespace

extern "C" {

cublasStatus_t cublasCreate_v2(cublasHandle_t* h) {
	if (!h) return CUBLAS_STATUS_INVALID_VALUE;
	if (!emu_has_current_context()) return CUBLAS_STATUS_NOT_INITIALIZED;
	*h = reinterpret_cast<cublasHandle_t>(new handle);
	return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy_v2(cublasHandle_t h) {
	if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
	delete reinterpret_cast<handle*>(h);
	return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream_v2(cublasHandle_t h, cudaStream_t s) {
	if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
	reinterpret_cast<handle*>(h)->stream = reinterpret_cast<CUstream>(s);
	return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                            const void* alphaP, const void* A, cudaDataType Atype, int lda, const void* B,
                            cudaDataType Btype, int ldb, const void* betaP, void* C, cudaDataType Ctype, int ldc,
                            cublasComputeType_t compute, cublasGemmAlgo_t algo) {
	if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
	if (Atype != CUDA_R_32F || Btype != CUDA_R_32F || Ctype != CUDA_R_32F) return CUBLAS_STATUS_NOT_SUPPORTED;
	int dropped;
	switch (compute) {
	case CUBLAS_COMPUTE_32F:
	case CUBLAS_COMPUTE_32F_PEDANTIC: dropped = 0; break;
	case CUBLAS_COMPUTE_32F_FAST_16BF: dropped = 16; break;
	case CUBLAS_COMPUTE_32F_FAST_TF32: dropped = 13; break;
	default: return CUBLAS_STATUS_NOT_SUPPORTED;
	}
	if (algo != CUBLAS_GEMM_DEFAULT && algo != CUBLAS_GEMM_DEFAULT_TENSOR_OP) return CUBLAS_STATUS_NOT_SUPPORTED;
	bool transA = ta != CUBLAS_OP_N, transB = tb != CUBLAS_OP_N;
	if ((ta != CUBLAS_OP_N && ta != CUBLAS_OP_T) || (tb != CUBLAS_OP_N && tb != CUBLAS_OP_T))
		return CUBLAS_STATUS_INVALID_VALUE;
	if (m < 0 || n < 0 || k < 0) return CUBLAS_STATUS_INVALID_VALUE;
	// Stored shapes: A is m×k (N) or k×m (T); B is k×n (N) or n×k (T).
	int rowsA = transA ? k : m, rowsB = transB ? n : k;
	if (lda < (rowsA > 1 ? rowsA : 1) || ldb < (rowsB > 1 ? rowsB : 1) || ldc < (m > 1 ? m : 1))
		return CUBLAS_STATUS_INVALID_VALUE;
	if (!alphaP || !betaP) return CUBLAS_STATUS_INVALID_VALUE;
	if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
	float alpha = *(const float*)alphaP, beta = *(const float*)betaP;  // host pointer mode
	const float *a = (const float*)A, *b = (const float*)B;
	float* c = (float*)C;
	CUresult r = emu_enqueue(reinterpret_cast<handle*>(h)->stream, [=] {
		// op(A), rounded as the compute type asks, row by row.
		std::vector<float> ap((size_t)m * k);
		for (int i = 0; i < m; i++)
			for (int l = 0; l < k; l++) {
				float v = transA ? a[l + (long)i * lda] : a[i + (long)l * lda];
				ap[(size_t)i * k + l] = dropped ? round_bits(v, dropped) : v;
			}
		// One task per column of C: each output has one writer and a fixed order.
		emu_parallel_for(n, [&](int j) {
			std::vector<float> bcol(k);
			for (int l = 0; l < k; l++) {
				float v = transB ? b[j + (long)l * ldb] : b[l + (long)j * ldb];
				bcol[l] = dropped ? round_bits(v, dropped) : v;
			}
			for (int i = 0; i < m; i++) {
				const float* ar = &ap[(size_t)i * k];
				float acc = 0;
				for (int l = 0; l < k; l++) acc += ar[l] * bcol[l];
				float* out = c + i + (long)j * ldc;
				*out = beta == 0 ? alpha * acc : alpha * acc + beta * *out;
			}
		});
	});
	return r == CUDA_SUCCESS ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_EXECUTION_FAILED;
}

}  // extern "C"
