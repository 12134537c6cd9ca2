// Tensor-core attention for training (included by kernels.cu): bf16 WMMA
// tiles (16×16×16, float accumulation) for QKᵀ, PV and the backward
// products, head dimension 64, self-attention with Tq == Tk and no cache
// offset (what training runs). The Go side uses it when the precision is
// bf16; otherwise, and for the KV-cache form, the float32 kernels above.
//
// Same contract as the float32 kernels: causal + document mask (key s is
// visible to query t iff s <= t and kdoc[s] == qdoc[t]), GQA, lse written
// by the forward for the backward, and no atomics: the forward does two
// passes over the keys (row max and sum, then normalised P·V) so the output
// accumulates in WMMA fragments without per-row rescaling; dQ and dK/dV are
// separate kernels, each output tile with one owner. 128 threads per block,
// warp w owns 16 rows (queries or keys) of a 64-row tile; shared memory
// stays under the 48 KiB static limit. Every shared-memory hand-off between
// warps is a __syncthreads.

#include <cuda_bf16.h>
#include <mma.h>

namespace tc {

using namespace nvcuda;
typedef __nv_bfloat16 bf16;
constexpr int HD = 64;      // head dimension
constexpr int ROWS = 64;    // queries (forward, dQ) or keys (dK/dV) per block
constexpr int LDH = HD + 8; // bf16 row stride of head-dim tiles (multiple of 8)
constexpr int LDO = HD + 4; // float row stride of output staging
constexpr int THREADS = 128;

// Inner tiles have COLS columns: keys (forward, dQ) or queries (dK/dV); 32
// in the forward, 16 in the backward, whose extra low-order tiles (below)
// must still fit in 48 KiB.
template <int COLS>
struct cols {
	static constexpr int LDS = COLS + 4; // float row stride of score tiles (multiple of 4)
	static constexpr int LDP = COLS + 8; // bf16 row stride of probability tiles (multiple of 8)
	static constexpr int PER = ROWS * COLS / THREADS; // score elements per thread
};

typedef wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> FragA;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> FragBRow;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> FragBCol;
typedef wmma::fragment<wmma::accumulator, 16, 16, 16, float> FragC;

// load_rows copies n rows of head vectors (row r from src + r*ld, rows at
// or past valid are zero) into a bf16 tile, times mul. With lo, it also
// stores the rounding residue v − bf16(v) there, in bf16: hi + lo carries
// about 16 significant bits.
__device__ __forceinline__ void load_rows(bf16* dst, const float* src, long ld, int n, int valid, float mul,
                                          bf16* lo = nullptr) {
	for (int i = threadIdx.x; i < n * HD; i += THREADS) {
		int r = i / HD, d = i % HD;
		float v = r < valid ? src[r * ld + d] * mul : 0.0f;
		bf16 hi = __float2bfloat16(v);
		dst[r * LDH + d] = hi;
		if (lo) lo[r * LDH + d] = __float2bfloat16(v - __bfloat162float(hi));
	}
}

// product_add: acc += A[16w.., 16kk..] · Bᵀ[.., 16c..] over the head dim.
__device__ __forceinline__ void product_add(FragC& acc, const bf16* A, const bf16* B, int c) {
	int w = threadIdx.x / 32;
	for (int kk = 0; kk < HD / 16; kk++) {
		FragA a;
		FragBCol b;
		wmma::load_matrix_sync(a, A + 16 * w * LDH + 16 * kk, LDH);
		wmma::load_matrix_sync(b, B + 16 * c * LDH + 16 * kk, LDH);
		wmma::mma_sync(acc, a, b, acc);
	}
}

// scores: S[16w.., 0..COLS) = A[16w.., :] · Bᵀ, A and B bf16 head-dim tiles
// (B holds COLS rows), stored as floats at S with stride LDS. With the low
// parts Alo and Blo it adds Alo·Bᵀ + A·Bloᵀ, which makes the product about
// as accurate as float32 (the dropped Alo·Bloᵀ is 2⁻¹⁶ smaller): the
// backward needs that for dP, whose rows are differenced against D.
template <int COLS>
__device__ __forceinline__ void scores(float* S, const bf16* A, const bf16* B, const bf16* Alo = nullptr,
                                       const bf16* Blo = nullptr) {
	int w = threadIdx.x / 32;
	for (int c = 0; c < COLS / 16; c++) {
		FragC acc;
		wmma::fill_fragment(acc, 0.0f);
		if (Alo) {
			product_add(acc, Alo, B, c);
			product_add(acc, A, Blo, c);
		}
		product_add(acc, A, B, c);
		wmma::store_matrix_sync(S + 16 * w * cols<COLS>::LDS + 16 * c, acc, cols<COLS>::LDS, wmma::mem_row_major);
	}
}

// accumulate: acc[c] += P[16w.., 0..COLS) · X[0..COLS, 16c..16c+16), P bf16
// with stride LDP, X a bf16 head-dim tile of COLS rows.
// With the low parts Plo and Xlo it adds Plo·X + P·Xlo too (split
// precision, as in scores).
template <int COLS>
__device__ __forceinline__ void accumulate(FragC* acc, const bf16* P, const bf16* X, const bf16* Plo = nullptr,
                                           const bf16* Xlo = nullptr) {
	int w = threadIdx.x / 32;
	constexpr int LDP = cols<COLS>::LDP;
	for (int c = 0; c < HD / 16; c++)
		for (int kk = 0; kk < COLS / 16; kk++) {
			FragA a;
			FragBRow b;
			if (Xlo) {
				wmma::load_matrix_sync(a, P + 16 * w * LDP + 16 * kk, LDP);
				wmma::load_matrix_sync(b, Xlo + 16 * kk * LDH + 16 * c, LDH);
				wmma::mma_sync(acc[c], a, b, acc[c]);
			}
			wmma::load_matrix_sync(b, X + 16 * kk * LDH + 16 * c, LDH);
			if (Plo) {
				wmma::load_matrix_sync(a, Plo + 16 * w * LDP + 16 * kk, LDP);
				wmma::mma_sync(acc[c], a, b, acc[c]);
			}
			wmma::load_matrix_sync(a, P + 16 * w * LDP + 16 * kk, LDP);
			wmma::mma_sync(acc[c], a, b, acc[c]);
		}
}

// split stores v as bf16 hi + lo at hi[i], lo[i].
__device__ __forceinline__ void split(bf16* hi, bf16* lo, int i, float v) {
	bf16 h = __float2bfloat16(v);
	hi[i] = h;
	lo[i] = __float2bfloat16(v - __bfloat162float(h));
}

// store_rows writes the ROWS×HD accumulators (warp w's rows 16w..) to dst
// rows [0, valid) with stride ld, through the float staging tile O.
__device__ __forceinline__ void store_rows(float* dst, long ld, int valid, const FragC* acc, float* O, float mul) {
	int w = threadIdx.x / 32;
	for (int c = 0; c < HD / 16; c++) wmma::store_matrix_sync(O + 16 * w * LDO + 16 * c, acc[c], LDO, wmma::mem_row_major);
	__syncthreads();
	for (int i = threadIdx.x; i < ROWS * HD; i += THREADS) {
		int r = i / HD, d = i % HD;
		if (r < valid) dst[r * ld + d] = O[r * LDO + d] * mul;
	}
}

}  // namespace tc

// attn_fwd_tc64: grid (ceil(T/64), B*H), 128 threads.
extern "C" __global__ void __launch_bounds__(128) attn_fwd_tc64(float* out, float* lse, const float* q, const float* k,
                                                                const float* v, const int* qdoc, const int* kdoc,
                                                                int B, int T, int H, int KV, float scale) {
	using namespace tc;
	constexpr int COLS = 32, LDS = cols<COLS>::LDS, LDP = cols<COLS>::LDP;
	// Qs | Ks | Vs | Vlo | S | P | Plo; the output staging over Ks..S when done.
	__shared__ __align__(128) unsigned char smem[ROWS * LDH * 2 + 3 * COLS * LDH * 2 + ROWS * LDS * 4 + 2 * ROWS * LDP * 2];
	__shared__ float rowM[ROWS], rowL[ROWS];
	__shared__ int qd[ROWS], kd[COLS];
	bf16* Qs = (bf16*)smem;
	bf16* Ks = Qs + ROWS * LDH;
	bf16* Vs = Ks + COLS * LDH;
	bf16* Vlo = Vs + COLS * LDH;
	float* S = (float*)(Vlo + COLS * LDH);
	bf16* P = (bf16*)(S + ROWS * LDS);
	bf16* Plo = P + ROWS * LDP;
	float* O = (float*)Ks;
	int bh = blockIdx.y, b = bh / H, h = bh % H, kvh = h / (H / KV);
	int q0 = blockIdx.x * ROWS, nq = min(ROWS, T - q0);
	int nk = q0 + nq; // keys past the block's last query are never visible
	long ldq = (long)H * HD, ldk = (long)KV * HD;
	load_rows(Qs, q + ((long)b * T + q0) * ldq + h * HD, ldq, ROWS, nq, scale);
	for (int r = threadIdx.x; r < ROWS; r += THREADS) {
		qd[r] = r < nq ? qdoc[b * T + q0 + r] : -3;
		rowM[r] = -CUDART_INF_F;
		rowL[r] = 0;
	}
	FragC acc[HD / 16];
	for (int c = 0; c < HD / 16; c++) wmma::fill_fragment(acc[c], 0.0f);
	// Pass 0: each row's max and sum of exp; pass 1: P = exp(S - max)/sum,
	// out = P·V. Recomputing S costs a third more forward FLOPs and keeps
	// the output in fragments, which cannot be rescaled row by row.
	for (int pass = 0; pass < 2; pass++) {
		for (int k0 = 0; k0 < nk; k0 += COLS) {
			int valid = min(COLS, nk - k0);
			load_rows(Ks, k + ((long)b * T + k0) * ldk + kvh * HD, ldk, COLS, valid, 1.0f);
			if (pass == 1) load_rows(Vs, v + ((long)b * T + k0) * ldk + kvh * HD, ldk, COLS, valid, 1.0f, Vlo);
			for (int j = threadIdx.x; j < COLS; j += THREADS) kd[j] = j < valid ? kdoc[b * T + k0 + j] : -2;
			__syncthreads();
			scores<COLS>(S, Qs, Ks);
			__syncthreads();
			if (pass == 0) {
				for (int r = threadIdx.x; r < ROWS; r += THREADS) { // one thread per row, keys in order
					float m = rowM[r], l = rowL[r];
					for (int j = 0; j < valid; j++) {
						if (k0 + j > q0 + r || kd[j] != qd[r]) continue;
						float x = S[r * LDS + j];
						if (x > m) {
							l = l * __expf(m - x) + 1.0f; // exp(-inf) = 0 on the first key
							m = x;
						} else {
							l += __expf(x - m);
						}
					}
					rowM[r] = m, rowL[r] = l;
				}
			} else {
				for (int i = threadIdx.x; i < ROWS * COLS; i += THREADS) {
					int r = i / COLS, j = i % COLS;
					bool vis = j < valid && k0 + j <= q0 + r && kd[j] == qd[r];
					float p = vis ? __expf(S[r * LDS + j] - rowM[r]) / rowL[r] : 0.0f;
					split(P, Plo, r * LDP + j, p);
				}
				__syncthreads();
				accumulate<COLS>(acc, P, Vs, Plo, Vlo);
			}
			__syncthreads();
		}
	}
	store_rows(out + ((long)b * T + q0) * ldq + h * HD, ldq, nq, acc, O, 1.0f);
	for (int r = threadIdx.x; r < nq; r += THREADS) lse[((long)b * T + q0 + r) * H + h] = rowM[r] + logf(rowL[r]);
}

// attn_bwd_dq_tc64: grid (ceil(T/64), B*H), 128 threads. dq = scale·Σ_s dS k_s
// with dS = P∘(dP − D), P = exp(S − lse), dP = dO·Vᵀ (split precision).
extern "C" __global__ void __launch_bounds__(128) attn_bwd_dq_tc64(float* dq, const float* dout, const float* lse,
                                                                   const float* Dl, const float* q, const float* k,
                                                                   const float* v, const int* qdoc, const int* kdoc,
                                                                   int B, int T, int H, int KV, float scale) {
	using namespace tc;
	constexpr int COLS = 16, LDS = cols<COLS>::LDS, LDP = cols<COLS>::LDP, PER = cols<COLS>::PER;
	// Qs | dOs | dOlo | Ks | Klo | Vs | Vlo | S | dS | dSlo; the output staging over dOs..dOlo when done.
	__shared__ __align__(128) unsigned char smem[3 * ROWS * LDH * 2 + 4 * COLS * LDH * 2 + ROWS * LDS * 4 + 2 * ROWS * LDP * 2];
	__shared__ float rowL[ROWS], rowD[ROWS];
	__shared__ int qd[ROWS], kd[COLS];
	bf16* Qs = (bf16*)smem;
	bf16* dOs = Qs + ROWS * LDH;
	bf16* dOlo = dOs + ROWS * LDH;
	bf16* Ks = dOlo + ROWS * LDH;
	bf16* Klo = Ks + COLS * LDH;
	bf16* Vs = Klo + COLS * LDH;
	bf16* Vlo = Vs + COLS * LDH;
	float* S = (float*)(Vlo + COLS * LDH);
	bf16* dS = (bf16*)(S + ROWS * LDS);
	bf16* dSlo = dS + ROWS * LDP;
	float* O = (float*)dOs;
	int bh = blockIdx.y, b = bh / H, h = bh % H, kvh = h / (H / KV);
	int q0 = blockIdx.x * ROWS, nq = min(ROWS, T - q0), nk = q0 + nq;
	long ldq = (long)H * HD, ldk = (long)KV * HD;
	load_rows(Qs, q + ((long)b * T + q0) * ldq + h * HD, ldq, ROWS, nq, scale);
	load_rows(dOs, dout + ((long)b * T + q0) * ldq + h * HD, ldq, ROWS, nq, 1.0f, dOlo);
	for (int r = threadIdx.x; r < ROWS; r += THREADS) {
		bool ok = r < nq;
		qd[r] = ok ? qdoc[b * T + q0 + r] : -3;
		rowL[r] = ok ? lse[((long)b * T + q0 + r) * H + h] : 0;
		rowD[r] = ok ? Dl[((long)b * T + q0 + r) * H + h] : 0;
	}
	FragC acc[HD / 16];
	for (int c = 0; c < HD / 16; c++) wmma::fill_fragment(acc[c], 0.0f);
	for (int k0 = 0; k0 < nk; k0 += COLS) {
		int valid = min(COLS, nk - k0);
		load_rows(Ks, k + ((long)b * T + k0) * ldk + kvh * HD, ldk, COLS, valid, 1.0f, Klo);
		load_rows(Vs, v + ((long)b * T + k0) * ldk + kvh * HD, ldk, COLS, valid, 1.0f, Vlo);
		for (int j = threadIdx.x; j < COLS; j += THREADS) kd[j] = j < valid ? kdoc[b * T + k0 + j] : -2;
		__syncthreads();
		scores<COLS>(S, Qs, Ks);
		__syncthreads();
		float p[PER];
		for (int n = 0; n < PER; n++) {
			int i = threadIdx.x + n * THREADS, r = i / COLS, j = i % COLS;
			bool vis = j < valid && k0 + j <= q0 + r && kd[j] == qd[r];
			p[n] = vis ? __expf(S[r * LDS + j] - rowL[r]) : 0.0f;
		}
		__syncthreads();
		scores<COLS>(S, dOs, Vs, dOlo, Vlo); // dP
		__syncthreads();
		for (int n = 0; n < PER; n++) {
			int i = threadIdx.x + n * THREADS, r = i / COLS, j = i % COLS;
			split(dS, dSlo, r * LDP + j, p[n] * (S[r * LDS + j] - rowD[r]));
		}
		__syncthreads();
		accumulate<COLS>(acc, dS, Ks, dSlo, Klo);
		__syncthreads();
	}
	store_rows(dq + ((long)b * T + q0) * ldq + h * HD, ldq, nq, acc, O, scale);
}

// attn_bwd_dkv_tc64: grid (ceil(T/64), B*KV), 128 threads; each block owns 64
// keys of one kv head and loops over the group's query heads and the
// queries that can see its keys: dv = Σ_t P dO_t, dk = Σ_t dS (scale q_t).
extern "C" __global__ void __launch_bounds__(128) attn_bwd_dkv_tc64(float* dk, float* dv, const float* dout,
                                                                    const float* lse, const float* Dl, const float* q,
                                                                    const float* k, const float* v, const int* qdoc,
                                                                    const int* kdoc, int B, int T, int H, int KV,
                                                                    float scale) {
	using namespace tc;
	constexpr int COLS = 16, LDS = cols<COLS>::LDS, LDP = cols<COLS>::LDP, PER = cols<COLS>::PER;
	// Ks | Vs | Vlo | Qs | Qlo | dOs | dOlo | S | P | dS; the output staging over Vlo.. when done.
	__shared__ __align__(128) unsigned char smem[3 * ROWS * LDH * 2 + 4 * COLS * LDH * 2 + ROWS * LDS * 4 + 2 * ROWS * LDP * 2];
	__shared__ float colL[COLS], colD[COLS];
	__shared__ int kd[ROWS], qd[COLS];
	bf16* Ks = (bf16*)smem;
	bf16* Vs = Ks + ROWS * LDH;
	bf16* Vlo = Vs + ROWS * LDH;
	bf16* Qs = Vlo + ROWS * LDH;
	bf16* Qlo = Qs + COLS * LDH;
	bf16* dOs = Qlo + COLS * LDH;
	bf16* dOlo = dOs + COLS * LDH;
	float* S = (float*)(dOlo + COLS * LDH);
	bf16* P = (bf16*)(S + ROWS * LDS);
	bf16* dS = P + ROWS * LDP;
	float* O = (float*)Vlo;
	int bk = blockIdx.y, b = bk / KV, kvh = bk % KV, group = H / KV;
	int s0 = blockIdx.x * ROWS, ns = min(ROWS, T - s0);
	long ldq = (long)H * HD, ldk = (long)KV * HD;
	load_rows(Ks, k + ((long)b * T + s0) * ldk + kvh * HD, ldk, ROWS, ns, 1.0f);
	load_rows(Vs, v + ((long)b * T + s0) * ldk + kvh * HD, ldk, ROWS, ns, 1.0f, Vlo);
	for (int r = threadIdx.x; r < ROWS; r += THREADS) kd[r] = r < ns ? kdoc[b * T + s0 + r] : -2;
	FragC dKa[HD / 16], dVa[HD / 16];
	for (int c = 0; c < HD / 16; c++) wmma::fill_fragment(dKa[c], 0.0f), wmma::fill_fragment(dVa[c], 0.0f);
	for (int g = 0; g < group; g++) {
		int h = kvh * group + g;
		for (int t0 = s0; t0 < T; t0 += COLS) { // queries before s0 see none of these keys
			int valid = min(COLS, T - t0);
			load_rows(Qs, q + ((long)b * T + t0) * ldq + h * HD, ldq, COLS, valid, scale, Qlo);
			load_rows(dOs, dout + ((long)b * T + t0) * ldq + h * HD, ldq, COLS, valid, 1.0f, dOlo);
			for (int j = threadIdx.x; j < COLS; j += THREADS) {
				bool ok = j < valid;
				qd[j] = ok ? qdoc[b * T + t0 + j] : -3;
				colL[j] = ok ? lse[((long)b * T + t0 + j) * H + h] : 0;
				colD[j] = ok ? Dl[((long)b * T + t0 + j) * H + h] : 0;
			}
			__syncthreads();
			scores<COLS>(S, Ks, Qs); // Sᵀ: keys × queries
			__syncthreads();
			float p[PER];
			for (int n = 0; n < PER; n++) {
				int i = threadIdx.x + n * THREADS, r = i / COLS, j = i % COLS;
				bool vis = r < ns && j < valid && s0 + r <= t0 + j && kd[r] == qd[j];
				p[n] = vis ? __expf(S[r * LDS + j] - colL[j]) : 0.0f;
				P[r * LDP + j] = __float2bfloat16(p[n]);
			}
			__syncthreads();
			accumulate<COLS>(dVa, P, dOs);
			scores<COLS>(S, Vs, dOs, Vlo, dOlo); // dPᵀ
			__syncthreads();
			for (int n = 0; n < PER; n++) { // dS, its low part where P was
				int i = threadIdx.x + n * THREADS, r = i / COLS, j = i % COLS;
				split(dS, P, r * LDP + j, p[n] * (S[r * LDS + j] - colD[j]));
			}
			__syncthreads();
			accumulate<COLS>(dKa, dS, Qs, P, Qlo);
			__syncthreads();
		}
	}
	store_rows(dk + ((long)b * T + s0) * ldk + kvh * HD, ldk, ns, dKa, O, 1.0f);
	__syncthreads();
	store_rows(dv + ((long)b * T + s0) * ldk + kvh * HD, ldk, ns, dVa, O, 1.0f);
}
