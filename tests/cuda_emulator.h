/* cuda_emulator.h: run gradc's generated CUDA on the CPU, for tests on machines without a GPU.
 *
 * Force-included (g++ -include) before a generated translation unit compiled as C++. It
 * maps the CUDA keywords the kernels use to C++ and emulates the execution model they
 * rely on: every thread of a block is a fiber with its own threadIdx (made by
 * makecontext, then switched with _setjmp/_longjmp, which unlike swapcontext makes no
 * system call);
 * __syncthreads() parks a fiber until every thread of its block arrived, and
 * __shfl_down_sync() exchanges values through a per-warp slot array between two warp
 * barriers. Blocks run one after another (kernels are grid-stride loops, so any grid
 * size is correct), which lets __shared__ arrays be plain statics. A barrier no other
 * thread can reach (a real kernel would hang) is reported as an error instead.
 */
#ifndef GRADC_CUDA_EMULATOR_H
#define GRADC_CUDA_EMULATOR_H

#include <math.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(n)
#define __restrict__ __restrict
#define __shared__ static

struct gradc_emu_dim3 {
    unsigned int x, y, z;
};
static gradc_emu_dim3 threadIdx, blockIdx, blockDim, gridDim;

namespace gradc_emu {

enum { MAX_THREADS = 1024, STACK = 64 * 1024 };

static jmp_buf scheduler;
static jmp_buf resume[MAX_THREADS];
static ucontext_t fibers[MAX_THREADS];
static bool started[MAX_THREADS];
static char *stacks;
static unsigned current, n_threads;
static bool finished[MAX_THREADS];
static bool waiting[MAX_THREADS];
static unsigned block_arrived, block_round;
static unsigned warp_arrived[MAX_THREADS / 32], warp_round[MAX_THREADS / 32];
static uint64_t slots[MAX_THREADS];

static void yield()
{
    if (!_setjmp(resume[current])) {
        _longjmp(scheduler, 1);
    }
}

/* Wait until `expected` fibers called this barrier in its current round. */
static void barrier(unsigned *arrived, unsigned *round, unsigned expected)
{
    const unsigned mine = *round;
    if (++*arrived == expected) {
        *arrived = 0;
        ++*round;
        return;
    }
    waiting[current] = true;
    while (*round == mine) {
        yield();
    }
    waiting[current] = false;
}

static void (*entry)(void **);  /* calls the kernel with its arguments, cast to their types */
static void **entry_args;

static void run_fiber()
{
    entry(entry_args);
    finished[current] = true;
    _longjmp(scheduler, 1);
}

/* Run one block's threads to completion; false if they wait on a barrier nobody else reaches. */
static bool run_block()
{
    for (unsigned t = 0; t < n_threads; ++t) {
        finished[t] = waiting[t] = started[t] = false;
        getcontext(&fibers[t]);
        fibers[t].uc_stack.ss_sp = stacks + (size_t)t * STACK;
        fibers[t].uc_stack.ss_size = STACK;
        fibers[t].uc_link = nullptr;
        makecontext(&fibers[t], run_fiber, 0);
    }
    block_arrived = 0;
    memset(warp_arrived, 0, sizeof warp_arrived);
    for (;;) {
        unsigned live = 0, parked = 0;
        const unsigned rounds_before = block_round;
        unsigned warps_before = 0;
        for (unsigned w = 0; w < MAX_THREADS / 32; ++w) {
            warps_before += warp_round[w];
        }
        for (unsigned t = 0; t < n_threads; ++t) {
            if (finished[t]) {
                continue;
            }
            current = t;
            threadIdx.x = t;
            if (!_setjmp(scheduler)) {
                if (started[t]) {
                    _longjmp(resume[t], 1);
                }
                started[t] = true;
                setcontext(&fibers[t]);
            }
            live += !finished[t];
            parked += waiting[t];
        }
        if (live == 0) {
            return true;
        }
        unsigned warps_after = 0;
        for (unsigned w = 0; w < MAX_THREADS / 32; ++w) {
            warps_after += warp_round[w];
        }
        if (parked == live && block_round == rounds_before && warps_after == warps_before) {
            return false;
        }
    }
}

}  // namespace gradc_emu

static void __syncthreads()
{
    gradc_emu::barrier(&gradc_emu::block_arrived, &gradc_emu::block_round, gradc_emu::n_threads);
}

template <typename T>
static T __shfl_down_sync(unsigned, T value, int offset)
{
    static_assert(sizeof(T) <= sizeof(uint64_t), "a shuffled value fits a slot");
    const unsigned t = threadIdx.x, warp = t / 32;
    memcpy(&gradc_emu::slots[t], &value, sizeof value);
    gradc_emu::barrier(&gradc_emu::warp_arrived[warp], &gradc_emu::warp_round[warp], 32);
    T result = value;
    if (t % 32 + offset < 32) {
        memcpy(&result, &gradc_emu::slots[t + offset], sizeof result);
    }
    gradc_emu::barrier(&gradc_emu::warp_arrived[warp], &gradc_emu::warp_round[warp], 32);
    return result;
}

/* Launch `entry` over `grid` blocks of `block` threads (a multiple of 32, at most 1024).
 * Returns 0, or 1 when a block deadlocked on a barrier. */
extern "C" int gradc_emu_launch(void (*entry)(void **), void **args, unsigned grid, unsigned block)
{
    using namespace gradc_emu;
    if (!stacks) {
        stacks = (char *)malloc((size_t)MAX_THREADS * STACK);
    }
    gradc_emu::entry = entry;
    entry_args = args;
    n_threads = block;
    gridDim = {grid, 1, 1};
    blockDim = {block, 1, 1};
    threadIdx = {0, 0, 0};
    for (unsigned b = 0; b < grid; ++b) {
        blockIdx = {b, 0, 0};
        if (!run_block()) {
            return 1;
        }
    }
    return 0;
}

#endif /* GRADC_CUDA_EMULATOR_H */
