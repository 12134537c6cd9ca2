// kernels.cu compiled for the host, for the CPU emulator: device.h turns
// the CUDA C++ it uses into host C++, and the registry below lets the
// emulated driver find each extern "C" kernel by name and call it with
// cuLaunchKernel's parameter array.
#include <math.h>

#include <type_traits>
#include <utility>

#include "device.h"
#include "../kernels/kernels.cu"

#include "emu.h"

namespace {

template <class T>
constexpr char sig_letter() {
	return std::is_pointer<T>::value ? 'p' : std::is_same<T, int>::value ? 'i' : std::is_same<T, float>::value ? 'f' : '?';
}

template <class... A, std::size_t... I>
void invoke(void (*f)(A...), void** p, std::index_sequence<I...>) {
	f(*static_cast<typename std::remove_cv<A>::type*>(p[I])...);
}

template <class... A>
void invoke_all(void (*f)(A...), void** p) {
	invoke(f, p, std::index_sequence_for<A...>{});
}

template <class... A>
std::string signature(void (*)(A...)) {
	return std::string{sig_letter<A>()...};
}

template <auto F>
void call(void** p) {
	invoke_all(F, p);
}

template <auto F>
emu_kernel entry(const char* name) {
	return emu_kernel{name, signature(F), &call<F>};
}

#define K(f) entry<f>(#f)
#define ATTN(hd) K(attn_fwd_##hd), K(attn_bwd_dq_##hd), K(attn_bwd_dkv_##hd)

}  // namespace

const std::vector<emu_kernel>& emu_registry() {
	static const std::vector<emu_kernel> r = {
	    K(axpy_f32),      K(scale_f32), K(sumsq_partial),          K(embedding_fwd), K(embedding_bwd),
	    K(rmsnorm_fwd),   K(rmsnorm_bwd_dx), K(rmsnorm_bwd_dw_partial), K(colsum_acc), K(rope),
	    K(swiglu_fwd),    K(swiglu_bwd), K(cross_entropy),          K(adamw),         K(sgemm_tiled),
	    K(attn_delta),    ATTN(16),     ATTN(32),                   ATTN(64),         ATTN(96),
	    ATTN(128),        K(attn_fwd_tc64), K(attn_bwd_dq_tc64),    K(attn_bwd_dkv_tc64),
	};
	return r;
}
