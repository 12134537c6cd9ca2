// Kernels of replayd's CUDA backend (package gpu), float32, compiled to PTX
// for compute_80 by gpu/kernels/build-ptx.sh and JIT-compiled by the driver
// at load time, so the binary depends on no CUDA runtime library.
//
// Rules every kernel follows, because model.Backend requires bit-identical
// results run to run: no floating-point atomics; every reduction has a
// fixed order (per-thread sequential loops, then a shared-memory tree whose
// shape depends only on the block size, which the Go side fixes).
//
// Integer parameters are int (32-bit) and the Go side passes each parameter
// in an 8-byte slot (cu's Launch copies 8 bytes per parameter).

#include <math_constants.h>

#define BLOCK 256

// ---------------------------------------------------------------- vectors

extern "C" __global__ void axpy_f32(float* d, float a, const float* s, int n) {
	for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
		d[i] += a * s[i];
}

extern "C" __global__ void scale_f32(float* d, float a, int n) {
	for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
		d[i] *= a;
}

// block_sum_d reduces one double per thread over a BLOCK-thread block; the
// tree depends only on BLOCK. The result is valid in thread 0.
__device__ double block_sum_d(double v, double* sh) {
	sh[threadIdx.x] = v;
	__syncthreads();
	for (int s = BLOCK / 2; s > 0; s >>= 1) {
		if (threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
		__syncthreads();
	}
	double r = sh[0];
	__syncthreads();
	return r;
}

// sumsq_partial: block b writes Σ x² over [b*chunk, (b+1)*chunk) to part[b].
// The host adds the partials in order, so the tree is fixed by chunk alone.
extern "C" __global__ void sumsq_partial(const float* x, int n, int chunk, double* part) {
	__shared__ double sh[BLOCK];
	int lo = blockIdx.x * chunk, hi = min(lo + chunk, n);
	double s = 0;
	for (int i = lo + threadIdx.x; i < hi; i += BLOCK) {
		double v = x[i];
		s += v * v;
	}
	s = block_sum_d(s, sh);
	if (threadIdx.x == 0) part[blockIdx.x] = s;
}

// --------------------------------------------------------------- embedding

extern "C" __global__ void embedding_fwd(float* out, const float* table, const int* tok, int rows, int dim) {
	int r = blockIdx.x;
	const float* src = table + (long)tok[r] * dim;
	float* dst = out + (long)r * dim;
	for (int j = threadIdx.x; j < dim; j += blockDim.x) dst[j] = src[j];
}

// embedding_bwd: segment u of the host-built CSR (tokens sorted, rows kept
// in order within a token) accumulates its rows into dtable[uniq[u]] in row
// order: no atomics, and the same summation order as the CPU backend.
extern "C" __global__ void embedding_bwd(float* dtable, const float* dout, const int* uniq, const int* start,
                                         const int* order, int dim) {
	int u = blockIdx.x;
	int j = blockIdx.y * blockDim.x + threadIdx.x;
	if (j >= dim) return;
	float* d = dtable + (long)uniq[u] * dim + j;
	float acc = *d;
	for (int i = start[u]; i < start[u + 1]; i++) acc += dout[(long)order[i] * dim + j];
	*d = acc;
}

// ----------------------------------------------------------------- RMSNorm

extern "C" __global__ void rmsnorm_fwd(float* out, float* rstd, const float* x, const float* w, int dim, float eps) {
	__shared__ double sh[BLOCK];
	long r = blockIdx.x;
	const float* xr = x + r * dim;
	double ss = 0;
	for (int j = threadIdx.x; j < dim; j += BLOCK) ss += (double)xr[j] * (double)xr[j];
	ss = block_sum_d(ss, sh);
	// Same rounding steps as the CPU backend: mean in float64, rounded to
	// float32, eps added in float32, 1/sqrt in float64.
	float rs = (float)(1.0 / sqrt((double)((float)(ss / dim) + eps)));
	if (threadIdx.x == 0) rstd[r] = rs;
	float* o = out + r * dim;
	for (int j = threadIdx.x; j < dim; j += BLOCK) o[j] = w[j] * (xr[j] * rs);
}

// rmsnorm_bwd_dx accumulates dx = rs*(w*dout) - rs³/dim * x * Σ(w*dout*x).
extern "C" __global__ void rmsnorm_bwd_dx(float* dx, const float* dout, const float* x, const float* w,
                                          const float* rstd, int dim) {
	__shared__ double sh[BLOCK];
	long r = blockIdx.x;
	const float *xr = x + r * dim, *dr = dout + r * dim;
	double dot = 0;
	for (int j = threadIdx.x; j < dim; j += BLOCK) dot += (double)(w[j] * dr[j]) * (double)xr[j];
	dot = block_sum_d(dot, sh);
	float rs = rstd[r];
	float k = (float)dot * rs * rs * rs / (float)dim;
	float* o = dx + r * dim;
	for (int j = threadIdx.x; j < dim; j += BLOCK) o[j] += rs * (w[j] * dr[j]) - k * xr[j];
}

// rmsnorm_bwd_dw_partial: block (cx, chunk) sums dout*x*rs over its rows
// [chunk*rowsPer, ...) for columns cx*BLOCK+threadIdx.x, in row order.
extern "C" __global__ void rmsnorm_bwd_dw_partial(float* part, const float* dout, const float* x, const float* rstd,
                                                  int rows, int dim, int rowsPer) {
	int j = blockIdx.x * BLOCK + threadIdx.x;
	if (j >= dim) return;
	int lo = blockIdx.y * rowsPer, hi = min(lo + rowsPer, rows);
	float acc = 0;
	for (long i = lo; i < hi; i++) acc += dout[i * dim + j] * (x[i * dim + j] * rstd[i]);
	part[(long)blockIdx.y * dim + j] = acc;
}

// colsum_acc: dw[j] += Σ_c part[c*dim + j], chunks in order.
extern "C" __global__ void colsum_acc(float* dw, const float* part, int chunks, int dim) {
	int j = blockIdx.x * blockDim.x + threadIdx.x;
	if (j >= dim) return;
	float acc = 0;
	for (int c = 0; c < chunks; c++) acc += part[(long)c * dim + j];
	dw[j] += acc;
}

// -------------------------------------------------------------------- RoPE

// rope: HF rotate_half on [rows, heads*hd]; one block per row.
extern "C" __global__ void rope(float* x, const int* pos, const float* cosT, const float* sinT, int heads, int hd,
                                int inverse) {
	long r = blockIdx.x;
	int half = hd / 2;
	const float* cr = cosT + (long)pos[r] * half;
	const float* sr = sinT + (long)pos[r] * half;
	for (int i = threadIdx.x; i < heads * half; i += blockDim.x) {
		int h = i / half, j = i % half;
		float* v = x + (r * heads + h) * hd;
		float a = v[j], b = v[j + half];
		float s = inverse ? -sr[j] : sr[j];
		v[j] = a * cr[j] - b * s;
		v[j + half] = b * cr[j] + a * s;
	}
}

// ------------------------------------------------------------------ SwiGLU

__device__ __forceinline__ float sigm(float x) { return (float)(1.0 / (1.0 + exp(-(double)x))); }

extern "C" __global__ void swiglu_fwd(float* out, const float* g, const float* u, int n) {
	for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
		out[i] = g[i] * sigm(g[i]) * u[i];
}

extern "C" __global__ void swiglu_bwd(float* dg, float* du, const float* dout, const float* g, const float* u, int n) {
	for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
		float sg = sigm(g[i]);
		float silu = g[i] * sg;
		float d = dout[i];
		du[i] = d * silu;
		dg[i] = d * u[i] * sg * (1 + g[i] * (1 - sg));
	}
}

// ----------------------------------------------------------- cross-entropy

#define CE_BLOCK 1024

// cross_entropy: one block per row. Pass 1 takes the max (a tree of
// maxima is order-independent), pass 2 sums exp in float64 per thread and
// then through a fixed tree, pass 3 (grad) writes softmax*w - w*onehot.
extern "C" __global__ void cross_entropy(float* losses, float* logits, const int* targets, const float* weights,
                                         int vocab, float gradScale, int grad) {
	__shared__ float shm[CE_BLOCK];
	__shared__ double shs[CE_BLOCK];
	long r = blockIdx.x;
	float* row = logits + r * vocab;
	int t = targets[r];
	if (t < 0) {
		if (threadIdx.x == 0) losses[r] = 0;
		if (grad)
			for (int j = threadIdx.x; j < vocab; j += CE_BLOCK) row[j] = 0;
		return;
	}
	float mx = -CUDART_INF_F;
	for (int j = threadIdx.x; j < vocab; j += CE_BLOCK) mx = fmaxf(mx, row[j]);
	shm[threadIdx.x] = mx;
	__syncthreads();
	for (int s = CE_BLOCK / 2; s > 0; s >>= 1) {
		if (threadIdx.x < s) shm[threadIdx.x] = fmaxf(shm[threadIdx.x], shm[threadIdx.x + s]);
		__syncthreads();
	}
	mx = shm[0];
	double sum = 0;
	for (int j = threadIdx.x; j < vocab; j += CE_BLOCK) sum += exp((double)(row[j] - mx));
	shs[threadIdx.x] = sum;
	__syncthreads();
	for (int s = CE_BLOCK / 2; s > 0; s >>= 1) {
		if (threadIdx.x < s) shs[threadIdx.x] += shs[threadIdx.x + s];
		__syncthreads();
	}
	sum = shs[0];
	float target = row[t];
	__syncthreads(); // every thread has read row[t] before it is overwritten
	if (threadIdx.x == 0) losses[r] = (float)((double)mx + log(sum) - (double)target);
	if (!grad) return;
	float w = weights[r] * gradScale;
	float sc = (float)(1.0 / sum) * w;
	for (int j = threadIdx.x; j < vocab; j += CE_BLOCK) {
		float e = (float)exp((double)(row[j] - mx));
		float gj = e * sc;
		if (j == t) gj -= w;
		row[j] = gj;
	}
}

// ------------------------------------------------------------------- AdamW

extern "C" __global__ void adamw(float* p, const float* g, float* m, float* v, int n, float b1, float b2, float c1,
                                 float c2, float decay, float stepSize, float bc2s, float eps) {
	for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
		float gi = g[i];
		float pi = p[i] * decay;
		float mi = m[i] * b1 + gi * c1;
		float vi = v[i] * b2 + c2 * gi * gi;
		float denom = sqrtf(vi) / bc2s + eps;
		p[i] = pi + (-stepSize * (mi / denom));
		m[i] = mi;
		v[i] = vi;
	}
}

// -------------------------------------------------------------------- GEMM

// sgemm_tiled: C[m,n] = alpha*op(A)·op(B) + beta*C, row-major, op(A) m×k,
// op(B) k×n. 64×64 tile per 256-thread block, 4×4 outputs per thread, k in
// steps of 16, k summed in order (deterministic). The fallback when no
// cuBLAS library can be loaded.
#define TM 64
#define TN 64
#define TK 16
extern "C" __global__ void sgemm_tiled(int tA, int tB, int m, int n, int k, float alpha, const float* A, int lda,
                                       const float* B, int ldb, float beta, float* C, int ldc) {
	__shared__ float As[TK][TM + 4];
	__shared__ float Bs[TK][TN + 4];
	int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
	int row0 = blockIdx.y * TM, col0 = blockIdx.x * TN;
	float acc[4][4] = {};
	for (int k0 = 0; k0 < k; k0 += TK) {
		// 64*16 = 1024 elements per tile, 4 per thread.
		for (int l = threadIdx.x; l < TM * TK; l += 256) {
			int i, kk;
			if (tA) { // A stored k×m: consecutive threads read consecutive i.
				i = l % TM, kk = l / TM;
			} else {
				kk = l % TK, i = l / TK;
			}
			int gi = row0 + i, gk = k0 + kk;
			float a = 0;
			if (gi < m && gk < k) a = tA ? A[(long)gk * lda + gi] : A[(long)gi * lda + gk];
			As[kk][i] = a;
		}
		for (int l = threadIdx.x; l < TN * TK; l += 256) {
			int j, kk;
			if (tB) { // B stored n×k.
				kk = l % TK, j = l / TK;
			} else {
				j = l % TN, kk = l / TN;
			}
			int gj = col0 + j, gk = k0 + kk;
			float b = 0;
			if (gj < n && gk < k) b = tB ? B[(long)gj * ldb + gk] : B[(long)gk * ldb + gj];
			Bs[kk][j] = b;
		}
		__syncthreads();
#pragma unroll
		for (int kk = 0; kk < TK; kk++) {
			float a[4], b[4];
#pragma unroll
			for (int x = 0; x < 4; x++) a[x] = As[kk][ty + 16 * x];
#pragma unroll
			for (int y = 0; y < 4; y++) b[y] = Bs[kk][tx + 16 * y];
#pragma unroll
			for (int x = 0; x < 4; x++)
#pragma unroll
				for (int y = 0; y < 4; y++) acc[x][y] += a[x] * b[y];
		}
		__syncthreads();
	}
#pragma unroll
	for (int x = 0; x < 4; x++) {
		int i = row0 + ty + 16 * x;
		if (i >= m) continue;
#pragma unroll
		for (int y = 0; y < 4; y++) {
			int j = col0 + tx + 16 * y;
			if (j >= n) continue;
			float* c = C + (long)i * ldc + j;
			*c = beta == 0 ? alpha * acc[x][y] : alpha * acc[x][y] + beta * *c;
		}
	}
}

// --------------------------------------------------------------- attention

// Layout (model.AttnShape): q/out [B*Tq, H*HD], k/v [B*Tk, KV*HD], lse
// [B*Tq*H]. Query t of sequence b (absolute index qoff+t) sees key s iff
// s <= qoff+t and kdoc[b*Tk+s] == qdoc[b*Tq+t]. Straightforward kernels:
// one thread per query (forward, dQ) or per key (dK/dV) with its vectors in
// registers, and the other side streamed through shared memory in tiles.

#define AQ 64 // queries (or keys) per block
#define AK 32 // keys (or queries) per shared-memory tile

template <int HD>
__device__ void attn_fwd(float* out, float* lse, const float* q, const float* k, const float* v, const int* qdoc,
                         const int* kdoc, int B, int Tq, int Tk, int qoff, int H, int KV, float scale) {
	__shared__ float Ks[AK][HD];
	__shared__ float Vs[AK][HD];
	__shared__ int Kd[AK];
	int bh = blockIdx.y, b = bh / H, h = bh % H, kvh = h / (H / KV);
	int t = blockIdx.x * AQ + threadIdx.x;
	bool live = t < Tq;
	int ldq = H * HD, ldk = KV * HD;
	float qr[HD], acc[HD];
	int doc = 0, qa = 0;
	if (live) {
		const float* qp = q + ((long)b * Tq + t) * ldq + h * HD;
#pragma unroll
		for (int d = 0; d < HD; d++) qr[d] = qp[d] * scale, acc[d] = 0;
		doc = qdoc[b * Tq + t];
		qa = qoff + t;
	}
	float mx = -CUDART_INF_F, l = 0;
	int tmax = min(blockIdx.x * AQ + AQ, Tq) - 1;
	int nk = min(qoff + tmax + 1, Tk);
	for (int s0 = 0; s0 < nk; s0 += AK) {
		for (int i = threadIdx.x; i < AK * HD; i += AQ) {
			int s = s0 + i / HD, d = i % HD;
			float kv = 0, vv = 0;
			if (s < nk) {
				long o = ((long)b * Tk + s) * ldk + kvh * HD + d;
				kv = k[o], vv = v[o];
			}
			Ks[i / HD][d] = kv;
			Vs[i / HD][d] = vv;
		}
		for (int i = threadIdx.x; i < AK; i += AQ) Kd[i] = s0 + i < nk ? kdoc[b * Tk + s0 + i] : -2;
		__syncthreads();
		if (live) {
			int smax = min(AK, nk - s0);
			for (int j = 0; j < smax; j++) {
				int s = s0 + j;
				if (s > qa || Kd[j] != doc) continue;
				float sc = 0;
#pragma unroll
				for (int d = 0; d < HD; d++) sc += qr[d] * Ks[j][d];
				if (sc > mx) {
					float c = __expf(mx - sc); // exp(-inf) = 0 on the first key
					l *= c;
#pragma unroll
					for (int d = 0; d < HD; d++) acc[d] *= c;
					mx = sc;
				}
				float p = __expf(sc - mx);
				l += p;
#pragma unroll
				for (int d = 0; d < HD; d++) acc[d] += p * Vs[j][d];
			}
		}
		__syncthreads();
	}
	if (!live) return;
	float* op = out + ((long)b * Tq + t) * ldq + h * HD;
	float inv = l > 0 ? 1.0f / l : 0.0f;
#pragma unroll
	for (int d = 0; d < HD; d++) op[d] = acc[d] * inv;
	lse[((long)b * Tq + t) * H + h] = l > 0 ? mx + logf(l) : mx;
}

// attn_delta: D[(b*Tq+t)*H+h] = Σ_d out·dout, the softmax-backward term.
extern "C" __global__ void attn_delta(float* D, const float* out, const float* dout, int rows, int H, int HD) {
	int i = blockIdx.x * blockDim.x + threadIdx.x; // (row, head)
	if (i >= rows * H) return;
	const float* o = out + (long)i * HD;
	const float* g = dout + (long)i * HD;
	float s = 0;
	for (int d = 0; d < HD; d++) s += o[d] * g[d];
	D[i] = s;
}

// attn_bwd_dq: one thread per (query, head): dq = scale Σ_s p(dp - D) k_s.
template <int HD>
__device__ void attn_bwd_dq(float* dq, const float* dout, const float* lse, const float* Dl, const float* q,
                            const float* k, const float* v, const int* qdoc, const int* kdoc, int B, int Tq, int Tk,
                            int qoff, int H, int KV, float scale) {
	__shared__ float Ks[AK][HD];
	__shared__ float Vs[AK][HD];
	__shared__ int Kd[AK];
	int bh = blockIdx.y, b = bh / H, h = bh % H, kvh = h / (H / KV);
	int t = blockIdx.x * AQ + threadIdx.x;
	bool live = t < Tq;
	int ldq = H * HD, ldk = KV * HD;
	float qr[HD], gr[HD], acc[HD];
	int doc = 0, qa = 0;
	float L = 0, Dv = 0;
	if (live) {
		long o = ((long)b * Tq + t) * ldq + h * HD;
#pragma unroll
		for (int d = 0; d < HD; d++) qr[d] = q[o + d] * scale, gr[d] = dout[o + d], acc[d] = 0;
		doc = qdoc[b * Tq + t];
		qa = qoff + t;
		L = lse[((long)b * Tq + t) * H + h];
		Dv = Dl[((long)b * Tq + t) * H + h];
	}
	int tmax = min(blockIdx.x * AQ + AQ, Tq) - 1;
	int nk = min(qoff + tmax + 1, Tk);
	for (int s0 = 0; s0 < nk; s0 += AK) {
		for (int i = threadIdx.x; i < AK * HD; i += AQ) {
			int s = s0 + i / HD, d = i % HD;
			float kv = 0, vv = 0;
			if (s < nk) {
				long o = ((long)b * Tk + s) * ldk + kvh * HD + d;
				kv = k[o], vv = v[o];
			}
			Ks[i / HD][d] = kv;
			Vs[i / HD][d] = vv;
		}
		for (int i = threadIdx.x; i < AK; i += AQ) Kd[i] = s0 + i < nk ? kdoc[b * Tk + s0 + i] : -2;
		__syncthreads();
		if (live) {
			int smax = min(AK, nk - s0);
			for (int j = 0; j < smax; j++) {
				int s = s0 + j;
				if (s > qa || Kd[j] != doc) continue;
				float sc = 0, dp = 0;
#pragma unroll
				for (int d = 0; d < HD; d++) sc += qr[d] * Ks[j][d], dp += gr[d] * Vs[j][d];
				float ds = __expf(sc - L) * (dp - Dv);
#pragma unroll
				for (int d = 0; d < HD; d++) acc[d] += ds * Ks[j][d];
			}
		}
		__syncthreads();
	}
	if (!live) return;
	float* o = dq + ((long)b * Tq + t) * ldq + h * HD;
#pragma unroll
	for (int d = 0; d < HD; d++) o[d] = acc[d] * scale;
}

// attn_bwd_dkv: one thread per (key, kv head); loops over the query heads
// of its group and the queries that can see it, in a fixed order:
// dv = Σ p dout, dk = scale Σ p(dp - D) q.
template <int HD>
__device__ void attn_bwd_dkv(float* dk, float* dv, const float* dout, const float* lse, const float* Dl,
                             const float* q, const float* k, const float* v, const int* qdoc, const int* kdoc, int B,
                             int Tq, int Tk, int qoff, int H, int KV, float scale) {
	__shared__ float Qs[AK][HD];
	__shared__ float Gs[AK][HD];
	__shared__ float Ls[AK], Ds[AK];
	__shared__ int Qd[AK];
	int bk = blockIdx.y, b = bk / KV, kvh = bk % KV, group = H / KV;
	int s = blockIdx.x * AQ + threadIdx.x;
	bool live = s < Tk;
	int ldq = H * HD, ldk = KV * HD;
	float kr[HD], vr[HD], dka[HD], dva[HD];
	int doc = 0;
	if (live) {
		long o = ((long)b * Tk + s) * ldk + kvh * HD;
#pragma unroll
		for (int d = 0; d < HD; d++) kr[d] = k[o + d] * scale, vr[d] = v[o + d], dka[d] = 0, dva[d] = 0;
		doc = kdoc[b * Tk + s];
	}
	// Queries t with qoff+t >= first key of the block can see a key here.
	int t0 = max(0, (int)(blockIdx.x * AQ) - qoff);
	for (int g = 0; g < group; g++) {
		int h = kvh * group + g;
		for (int tb = t0; tb < Tq; tb += AK) {
			for (int i = threadIdx.x; i < AK * HD; i += AQ) {
				int t = tb + i / HD, d = i % HD;
				float qv = 0, gv = 0;
				if (t < Tq) {
					long o = ((long)b * Tq + t) * ldq + h * HD + d;
					qv = q[o], gv = dout[o];
				}
				Qs[i / HD][d] = qv;
				Gs[i / HD][d] = gv;
			}
			for (int i = threadIdx.x; i < AK; i += AQ) {
				int t = tb + i;
				bool ok = t < Tq;
				Qd[i] = ok ? qdoc[b * Tq + t] : -2;
				Ls[i] = ok ? lse[((long)b * Tq + t) * H + h] : 0;
				Ds[i] = ok ? Dl[((long)b * Tq + t) * H + h] : 0;
			}
			__syncthreads();
			if (live) {
				int jmax = min(AK, Tq - tb);
				for (int j = 0; j < jmax; j++) {
					int t = tb + j;
					if (s > qoff + t || Qd[j] != doc) continue;
					float sc = 0, dp = 0;
#pragma unroll
					for (int d = 0; d < HD; d++) sc += Qs[j][d] * kr[d], dp += Gs[j][d] * vr[d];
					float p = __expf(sc - Ls[j]);
					float ds = p * (dp - Ds[j]);
#pragma unroll
					for (int d = 0; d < HD; d++) dva[d] += p * Gs[j][d], dka[d] += ds * Qs[j][d];
				}
			}
			__syncthreads();
		}
	}
	if (!live) return;
	long o = ((long)b * Tk + s) * ldk + kvh * HD;
	// kr was pre-multiplied by scale, so Qs·kr is the scaled score; dk
	// needs scale once more: dS/dk = scale q.
#pragma unroll
	for (int d = 0; d < HD; d++) dk[o + d] = dka[d] * scale, dv[o + d] = dva[d];
}

#define ATTN_INSTANCES(HD)                                                                                          \
	extern "C" __global__ void __launch_bounds__(AQ) attn_fwd_##HD(                                                \
	    float* out, float* lse, const float* q, const float* k, const float* v, const int* qdoc, const int* kdoc,   \
	    int B, int Tq, int Tk, int qoff, int H, int KV, float scale) {                                              \
		attn_fwd<HD>(out, lse, q, k, v, qdoc, kdoc, B, Tq, Tk, qoff, H, KV, scale);                                  \
	}                                                                                                               \
	extern "C" __global__ void __launch_bounds__(AQ) attn_bwd_dq_##HD(                                             \
	    float* dq, const float* dout, const float* lse, const float* D, const float* q, const float* k,              \
	    const float* v, const int* qdoc, const int* kdoc, int B, int Tq, int Tk, int qoff, int H, int KV,            \
	    float scale) {                                                                                              \
		attn_bwd_dq<HD>(dq, dout, lse, D, q, k, v, qdoc, kdoc, B, Tq, Tk, qoff, H, KV, scale);                      \
	}                                                                                                               \
	extern "C" __global__ void __launch_bounds__(AQ) attn_bwd_dkv_##HD(                                            \
	    float* dk, float* dv, const float* dout, const float* lse, const float* D, const float* q, const float* k,  \
	    const float* v, const int* qdoc, const int* kdoc, int B, int Tq, int Tk, int qoff, int H, int KV,            \
	    float scale) {                                                                                              \
		attn_bwd_dkv<HD>(dk, dv, dout, lse, D, q, k, v, qdoc, kdoc, B, Tq, Tk, qoff, H, KV, scale);                 \
	}

ATTN_INSTANCES(16)
ATTN_INSTANCES(32)
ATTN_INSTANCES(64)
ATTN_INSTANCES(96)
ATTN_INSTANCES(128)

#include "attn_tc.cuh"
