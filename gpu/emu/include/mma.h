// Host stand-in for CUDA's <mma.h> (the WMMA API), for the CPU emulator
// (gpu/emu). On a GPU a fragment is spread over the 32 lanes of a warp in an
// unspecified layout; here every lane keeps the whole tile and computes the
// whole result, which is the same observable behaviour for code that only
// uses fragments through load/store/fill/mma (kernels.cu does). Products
// are exact in float (bf16 × bf16 fits) and summed in float in k order.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

// emu_wmma_check aborts, naming the call, when p is not 256-bit aligned or
// ldm is not a multiple of 16 bytes: WMMA's documented requirements, which
// a GPU does not always report.
void emu_wmma_check(const char* what, const void* p, unsigned ldm, unsigned elemSize);

namespace nvcuda {
namespace wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

inline float to_float(float v) { return v; }
inline float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

template <class Use, int M, int N, int K>
struct tile;
template <int M, int N, int K>
struct tile<matrix_a, M, N, K> {
	static constexpr int rows = M, cols = K;
};
template <int M, int N, int K>
struct tile<matrix_b, M, N, K> {
	static constexpr int rows = K, cols = N;
};
template <int M, int N, int K>
struct tile<accumulator, M, N, K> {
	static constexpr int rows = M, cols = N;
};

template <class Use, int M, int N, int K, class T, class Layout = void>
struct fragment {
	static constexpr int rows = tile<Use, M, N, K>::rows, cols = tile<Use, M, N, K>::cols;
	static constexpr int num_elements = rows * cols;
	T x[rows * cols];  // the logical tile, row-major
};

template <class Use, int M, int N, int K, class T, class L>
inline void fill_fragment(fragment<Use, M, N, K, T, L>& f, const T& v) {
	for (int i = 0; i < f.num_elements; i++) f.x[i] = v;
}

template <class Use, int M, int N, int K, class T>
inline void load_matrix_sync(fragment<Use, M, N, K, T, row_major>& f, const T* p, unsigned ldm) {
	emu_wmma_check("load_matrix_sync", p, ldm, sizeof(T));
	for (int r = 0; r < f.rows; r++)
		for (int c = 0; c < f.cols; c++) f.x[r * f.cols + c] = p[(size_t)r * ldm + c];
}

template <class Use, int M, int N, int K, class T>
inline void load_matrix_sync(fragment<Use, M, N, K, T, col_major>& f, const T* p, unsigned ldm) {
	emu_wmma_check("load_matrix_sync", p, ldm, sizeof(T));
	for (int r = 0; r < f.rows; r++)
		for (int c = 0; c < f.cols; c++) f.x[r * f.cols + c] = p[(size_t)c * ldm + r];
}

template <int M, int N, int K, class T>
inline void load_matrix_sync(fragment<accumulator, M, N, K, T>& f, const T* p, unsigned ldm, layout_t l) {
	emu_wmma_check("load_matrix_sync", p, ldm, sizeof(T));
	for (int r = 0; r < M; r++)
		for (int c = 0; c < N; c++) f.x[r * N + c] = l == mem_row_major ? p[(size_t)r * ldm + c] : p[(size_t)c * ldm + r];
}

template <int M, int N, int K, class T>
inline void store_matrix_sync(T* p, const fragment<accumulator, M, N, K, T>& f, unsigned ldm, layout_t l) {
	emu_wmma_check("store_matrix_sync", p, ldm, sizeof(T));
	for (int r = 0; r < M; r++)
		for (int c = 0; c < N; c++) {
			if (l == mem_row_major) {
				p[(size_t)r * ldm + c] = f.x[r * N + c];
			} else {
				p[(size_t)c * ldm + r] = f.x[r * N + c];
			}
		}
}

template <int M, int N, int K, class Ta, class La, class Lb, class Tc>
inline void mma_sync(fragment<accumulator, M, N, K, Tc>& d, const fragment<matrix_a, M, N, K, Ta, La>& a,
                     const fragment<matrix_b, M, N, K, Ta, Lb>& b, const fragment<accumulator, M, N, K, Tc>& c,
                     bool = false) {
	Tc out[M * N];
	for (int i = 0; i < M; i++)
		for (int j = 0; j < N; j++) {
			float acc = c.x[i * N + j];
			for (int k = 0; k < K; k++) acc += to_float(a.x[i * K + k]) * to_float(b.x[k * N + j]);
			out[i * N + j] = acc;
		}
	for (int i = 0; i < M * N; i++) d.x[i] = out[i];
}

}  // namespace wmma
}  // namespace nvcuda
