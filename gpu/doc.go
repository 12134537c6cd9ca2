// Package gpu is replayd's CUDA implementation of model.Backend.
//
// The backend itself is compiled only with the build tag cuda (make
// build-cuda): gorgonia.org/cu calls cuInit in its package init and exits the
// process when no GPU is present, so the default build must never import it.
// Without the tag, New returns ErrNotBuilt and the package compiles with no
// cgo and no CUDA headers.
//
// With the tag, every Backend operation runs on the device: tensors are device
// allocations, kernels are CUDA C (kernels/kernels.cu) shipped as embedded PTX
// for compute_80 and JIT-compiled by the driver, and GEMMs go through a cuBLAS
// found with dlopen at run time (no link-time dependency on a CUDA toolkit
// version), falling back to the package's own tiled kernel. Only the driver
// API (libcuda.so.1) is linked. See README.md.
package gpu
