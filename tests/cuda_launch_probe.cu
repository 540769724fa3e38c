// launch_kernel (common/kernel_common.h) reports the error of its own launch only (test_cpp_build.py).
// Prints "device" or "no-device", then the error names of: a launch made while an unrelated error is pending, the
// pending error as read afterwards, and the last error after a failing launch (which launch_kernel clears).
#include <cstdio>

#include "common/kernel_common.h"

namespace {
__global__ void write_value(int* out, float scale, long long n) {
    if (threadIdx.x == 0 && blockIdx.x == 0 && n > 0) *out = int(scale);
}
} // namespace

int main() {
    int count = 0;
    const bool device = cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
    (void)cudaGetLastError();
    int* out = nullptr;
    if (device && cudaMalloc(&out, sizeof(int)) != cudaSuccess) return 1;
    (void)cudaSetDevice(1 << 20);  // leaves cudaErrorInvalidDevice pending (no device: another error)
    const cudaError_t launched = dynconv::launch_kernel(write_value, 1, 32, nullptr, out, 2.0f, 1);
    const cudaError_t pending = cudaGetLastError();
    const cudaError_t failed = dynconv::launch_kernel(write_value, 1, 1 << 20, nullptr, out, 2.0f, 1);  // too many threads
    const cudaError_t after_failure = cudaGetLastError();
    std::printf("%s %s %s %s %s\n", device ? "device" : "no-device", cudaGetErrorName(launched),
                cudaGetErrorName(pending), cudaGetErrorName(failed), cudaGetErrorName(after_failure));
    return 0;
}
