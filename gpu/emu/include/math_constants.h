// Host stand-in for CUDA's math_constants.h, for the CPU emulator of the
// CUDA backend (gpu/emu): CUDA's own defines use device intrinsics.
#pragma once
#include <limits>
#define CUDART_INF_F (std::numeric_limits<float>::infinity())
#define CUDART_INF (std::numeric_limits<double>::infinity())
#define CUDART_NAN_F (std::numeric_limits<float>::quiet_NaN())
