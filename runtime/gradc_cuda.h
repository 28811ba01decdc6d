/* gradc_cuda.h: what generated CUDA kernels include (NVRTC or nvcc).
 *
 * NVRTC compiles without system headers, so the fixed-width integer types, the limits
 * and INFINITY/NAN the kernels use are defined here; then gradc_runtime.h supplies the
 * same helpers as the C backend (counter-based RNG, float32 exp/tanh/erf, floor division,
 * NaN-propagating max/min) as device functions, so both backends compute alike. Block
 * reductions (warp shuffles, then one value per warp through shared memory) serve
 * reduction kernels and the per-row stages of fused row kernels.
 */
#ifndef GRADC_CUDA_H
#define GRADC_CUDA_H

#ifdef __CUDACC_RTC__
typedef signed char int8_t;
typedef short int16_t;
typedef int int32_t;
typedef long long int64_t;
typedef unsigned char uint8_t;
typedef unsigned int uint32_t;
typedef unsigned long long uint64_t;
#else
#include <stdint.h>
#endif
#ifndef INFINITY
#define INFINITY __int_as_float(0x7f800000)
#define NAN __int_as_float(0x7fffffff)
#endif
#ifndef INT64_MAX
#define INT8_MIN (-128)
#define INT8_MAX 127
#define INT16_MIN (-32768)
#define INT16_MAX 32767
#define INT32_MIN (-2147483647 - 1)
#define INT32_MAX 2147483647
#define INT64_MIN (-9223372036854775807LL - 1)
#define INT64_MAX 9223372036854775807LL
#define UINT8_MAX 255
#endif

#define GRADC_FN static __device__ __forceinline__
#include "gradc_runtime.h"

#define GRADC_THREADS 256 /* threads per block of every kernel */

/* A warp shuffle for every element type: types narrower than 32 bits travel as int. */
template <typename T>
static __device__ __forceinline__ T gradc_shfl_down(T value, int offset)
{
    return __shfl_down_sync(0xffffffffu, value, offset);
}
#define GRADC_NARROW_SHUFFLE(T) \
    template <> __device__ __forceinline__ T gradc_shfl_down<T>(T value, int offset) \
    { \
        return (T)__shfl_down_sync(0xffffffffu, (int)value, offset); \
    }
GRADC_NARROW_SHUFFLE(bool)
GRADC_NARROW_SHUFFLE(int8_t)
GRADC_NARROW_SHUFFLE(int16_t)
GRADC_NARROW_SHUFFLE(uint8_t)

/* Combine one value per thread of the block with `op` (sum, product, NaN-propagating max
 * or min; `identity` is its neutral value); every thread gets the result. `scratch` holds
 * one value per warp. */
template <typename T, typename Op>
static __device__ __forceinline__ T gradc_block_reduce(T value, Op op, T identity, T *scratch)
{
    for (int offset = 16; offset > 0; offset /= 2) {
        value = op(value, gradc_shfl_down(value, offset));
    }
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    __syncthreads();  /* scratch may still be read by a previous reduction */
    if (lane == 0) {
        scratch[warp] = value;
    }
    __syncthreads();
    if (warp == 0) {
        value = lane < (int)(blockDim.x / 32) ? scratch[lane] : identity;
        for (int offset = 16; offset > 0; offset /= 2) {
            value = op(value, gradc_shfl_down(value, offset));
        }
        if (lane == 0) {
            scratch[0] = value;
        }
    }
    __syncthreads();
    return scratch[0];
}

/* Four consecutive elements, aligned so that one vector memory instruction (two for 8-byte
 * types) moves them: pointwise kernels read and write contiguous buffers this way when
 * every such buffer is aligned (`gradc_aligned4`), and element by element otherwise. */
template <typename T>
struct alignas(4 * sizeof(T)) gradc_vec4 {
    T v[4];
};

template <typename T>
static __device__ __forceinline__ bool gradc_aligned4(const T *p)
{
    return (uint64_t)p % (4 * sizeof(T)) == 0;
}

template <typename T>
static __device__ __forceinline__ gradc_vec4<T> gradc_load4(const T *p, int64_t q)
{
    return reinterpret_cast<const gradc_vec4<T> *>(p)[q];
}

template <typename T>
static __device__ __forceinline__ void gradc_store4(T *p, int64_t q, const gradc_vec4<T> &value)
{
    reinterpret_cast<gradc_vec4<T> *>(p)[q] = value;
}

struct gradc_add { template <typename T> __device__ T operator()(T a, T b) const { return a + b; } };
struct gradc_mul { template <typename T> __device__ T operator()(T a, T b) const { return a * b; } };
struct gradc_amax { template <typename T> __device__ T operator()(T a, T b) const { return gradc_max(a, b); } };
struct gradc_amin { template <typename T> __device__ T operator()(T a, T b) const { return gradc_min(a, b); } };

#endif /* GRADC_CUDA_H */
