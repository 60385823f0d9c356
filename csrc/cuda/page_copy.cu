// Copies KV pages between slots of a page pool on the GPU: the copy-on-write step when a search
// node forks inside a partly filled page. Raw device pointers only (no torch in csrc/).
#include <cuda_runtime.h>

#include <cstdint>

namespace o1search::cuda {

namespace {

// One block per (page pair, layer plane); threads stride over the page's bytes as 16-byte words.
__global__ void CopyPagesKernel(uint4* __restrict__ pool, const int32_t* __restrict__ src,
                                const int32_t* __restrict__ dst, int64_t words_per_page,
                                int64_t words_per_plane, int num_planes) {
  const int pair = blockIdx.x;
  const int plane = blockIdx.y;
  if (plane >= num_planes) return;
  uint4* base = pool + plane * words_per_plane;
  const uint4* from = base + static_cast<int64_t>(src[pair]) * words_per_page;
  uint4* to = base + static_cast<int64_t>(dst[pair]) * words_per_page;
  for (int64_t i = threadIdx.x; i < words_per_page; i += blockDim.x) to[i] = from[i];
}

}  // namespace

// pool: num_planes planes (e.g. K and V of every layer), each holding `pages_per_plane` pages of
// `page_bytes` bytes (a multiple of 16). src/dst: device arrays of `n` page ids.
// Returns the CUDA error code of the launch.
int CopyPages(void* pool, const int32_t* src, const int32_t* dst, int n, int64_t page_bytes,
              int64_t pages_per_plane, int num_planes, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  if (page_bytes % 16 != 0) return cudaErrorInvalidValue;
  const int64_t words_per_page = page_bytes / 16;
  dim3 grid(n, num_planes);
  CopyPagesKernel<<<grid, 256, 0, stream>>>(static_cast<uint4*>(pool), src, dst, words_per_page,
                                            words_per_page * pages_per_plane, num_planes);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace o1search::cuda
