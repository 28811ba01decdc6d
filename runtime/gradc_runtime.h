/* gradc_runtime.h: helpers that generated C kernels call.
 *
 * Each helper reproduces numpy's (and so gradc eager's) semantics where C's own
 * functions differ: NaN-propagating max/min (fmax/fmin drop NaN) and Python-style
 * floor division and remainder (the sign follows the divisor).
 * The `f` variants are the float32 versions, selected by the compiler's renderer.
 *
 * float32 exp, tanh and sigmoid are our own branch-free versions instead of libm's
 * (float64 keeps libm): a scalar libm call per element stops gcc from vectorising the
 * loop, which made compiled float32 chains slower than numpy. They are written with
 * selects and bit casts only, so in a `#pragma omp simd` loop gcc vectorises them at
 * -O2 without -ffast-math; each is within 2 float32 ulps of the exact result
 * (tests/test_compiler_math.py checks it against numpy float64), NaN stays NaN and
 * infinities and overflow/underflow saturate as numpy's do. Polynomial coefficients
 * are our own least-squares fits (relative error, Chebyshev nodes), rounded to float.
 */
#ifndef GRADC_RUNTIME_H
#define GRADC_RUNTIME_H

/* In C the helpers are GRADC_FN functions; CUDA code includes this header through
 * gradc_cuda.h, which defines GRADC_FN as a device function and provides the types and
 * constants (NVRTC has no system headers). */
#ifndef GRADC_FN
#define GRADC_FN static inline
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#endif

/* Operands are always plain variables or literals, so evaluating them twice is safe. */
#define gradc_max(a, b) (((a) != (a) || (a) > (b)) ? (a) : (b))
#define gradc_min(a, b) (((a) != (a) || (a) < (b)) ? (a) : (b))

GRADC_FN double gradc_floordiv(double a, double b)
{
    if (b == 0) {
        return a / b;
    }
    double mod = fmod(a, b);
    double div = (a - mod) / b;
    if (mod != 0 && ((b < 0) != (mod < 0))) {
        div -= 1.0;
    }
    if (div == 0) {
        return copysign(0.0, a / b);
    }
    double fl = floor(div);
    return (div - fl > 0.5) ? fl + 1.0 : fl;
}

GRADC_FN float gradc_floordivf(float a, float b)
{
    if (b == 0) {
        return a / b;
    }
    float mod = fmodf(a, b);
    float div = (a - mod) / b;
    if (mod != 0 && ((b < 0) != (mod < 0))) {
        div -= 1.0f;
    }
    if (div == 0) {
        return copysignf(0.0f, a / b);
    }
    float fl = floorf(div);
    return (div - fl > 0.5f) ? fl + 1.0f : fl;
}

GRADC_FN double gradc_remainder(double a, double b)
{
    if (b == 0) {
        return fmod(a, b);
    }
    double mod = fmod(a, b);
    if (mod != 0) {
        return ((b < 0) != (mod < 0)) ? mod + b : mod;
    }
    return copysign(0.0, b);
}

GRADC_FN float gradc_remainderf(float a, float b)
{
    if (b == 0) {
        return fmodf(a, b);
    }
    float mod = fmodf(a, b);
    if (mod != 0) {
        return ((b < 0) != (mod < 0)) ? mod + b : mod;
    }
    return copysignf(0.0f, b);
}

GRADC_FN float gradc_bits_to_float(uint32_t u)
{
#ifdef __CUDACC__
    return __uint_as_float(u);
#else
    float f;
    __builtin_memcpy(&f, &u, sizeof f);
    return f;
#endif
}

GRADC_FN uint32_t gradc_float_to_bits(float f)
{
#ifdef __CUDACC__
    return __float_as_uint(f);
#else
    uint32_t u;
    __builtin_memcpy(&u, &f, sizeof u);
    return u;
#endif
}

/* exp(r) for r = x - n*ln2, |r| <= ln2 / 2: r is exact to float precision in two steps
 * (ln2's high part has few bits, so n*LN2_HI is exact); exp(r) = 1 + r + r^2 q(r) with q
 * of degree 4 (fit error 4e-9). */
GRADC_FN float gradc_exp_reduced(float x, float n)
{
    const float ln2_hi = 0.693145752f, ln2_lo = 1.42860677e-06f;
    float r = (x - n * ln2_hi) - n * ln2_lo;
    float q = 0.00137513888f;
    q = q * r + 0.00836892147f;
    q = q * r + 0.0416695327f;
    q = q * r + 0.166665182f;
    q = q * r + 0.499999881f;
    return 1.0f + (r + r * r * q);
}

/* exp(x) = 2^n * exp(r), n = round(x / ln2) (see gradc_exp_reduced). 2^n is applied as
 * two factors 2^(n/2) so results near overflow and in the subnormal range stay exact. */
GRADC_FN float gradc_expf(float x)
{
    const float log2e = 1.44269504f;
    const float round_magic = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    float xc = x > 89.0f ? 89.0f : x; /* keeps n within the two-factor scale range */
    xc = xc < -104.0f ? -104.0f : xc;
    float shifted = xc * log2e + round_magic;
    float n = shifted - round_magic;
    int32_t ni = (int32_t)(gradc_float_to_bits(shifted) - gradc_float_to_bits(round_magic));
    float p = gradc_exp_reduced(xc, n);
    int32_t half = ni >> 1;
    float s1 = gradc_bits_to_float((uint32_t)(half + 127) << 23);
    float s2 = gradc_bits_to_float((uint32_t)(ni - half + 127) << 23);
    float y = p * s1 * s2;
    y = x > 88.7228394f ? INFINITY : y;
    return x < -103.972076f ? 0.0f : y; /* a NaN x passes through as NaN (every comparison is false) */
}

/* gradc_expf for x <= 0 (softmax's x - max), -inf and NaN, bit for bit, in fewer
 * instructions: nothing can overflow, a NaN passes through the arithmetic on its
 * own, and since n >= -150, p * 2^(n+64) is an exact normal number, so one rounding
 * multiplication by 2^-64 gives what gradc_expf's two factors give. */
GRADC_FN float gradc_expf_nonpositive(float x)
{
    const float log2e = 1.44269504f;
    const float round_magic = 12582912.0f;
    const float two_m64 = 5.42101086e-20f; /* 2^-64 */
    float xc = x < -104.0f ? -104.0f : x;
    float shifted = xc * log2e + round_magic;
    float n = shifted - round_magic;
    int32_t ni = (int32_t)(gradc_float_to_bits(shifted) - gradc_float_to_bits(round_magic));
    float p = gradc_exp_reduced(xc, n);
    float y = p * gradc_bits_to_float((uint32_t)(ni + 64 + 127) << 23) * two_m64;
    return x < -103.972076f ? 0.0f : y;
}

/* tanh(x) = sign(x) * (1 - e) / (1 + e) with e = exp(-2|x|); below |x| = 0.625 that
 * quotient cancels, so there tanh(x) = x + x^3 q(x^2) with q of degree 5 (fit error
 * 2e-10). e underflows to 0 for large |x| (and inf), giving exactly +-1; NaN stays NaN. */
GRADC_FN float gradc_tanhf(float x)
{
    float a = fabsf(x);
    float e = gradc_expf_nonpositive(-2.0f * a);
    float big = (1.0f - e) / (1.0f + e);
    float s = x * x;
    float q = 0.00214899099f;
    q = q * s - 0.00818466954f;
    q = q * s + 0.0217040032f;
    q = q * s - 0.0539474562f;
    q = q * s + 0.133332118f;
    q = q * s - 0.333333313f;
    float small = a + a * s * q;
    float r = a < 0.625f ? small : big;  /* |tanh(x)|; the sign goes back on as a bit, so -0 stays -0 */
    return gradc_bits_to_float(gradc_float_to_bits(r) | (gradc_float_to_bits(x) & 0x80000000u));
}

/* sigmoid as eager computes it: e = exp(-|x|) never overflows, and the two quotients
 * keep full relative precision on both tails. */
GRADC_FN double gradc_sigmoid(double x)
{
    double e = exp(-fabs(x));
    return x >= 0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
}

GRADC_FN float gradc_sigmoidf(float x)
{
    float e = gradc_expf_nonpositive(-fabsf(x));
    float num = x >= 0.0f ? 1.0f : e;
    return num / (1.0f + e);
}

/* float32 erf, branch-free: eager's float32 formula (gradc/ops/special.py) step for step,
 * a Taylor polynomial below 0.5 and Abramowitz & Stegun 7.1.26 above, with the
 * coefficients rounded to float exactly as numpy rounds them (double literal, then
 * float), so compiled and eager differ only by their exp. libm's erff is a scalar call
 * that keeps a GELU loop from vectorising. */
GRADC_FN float gradc_erff(float x)
{
    const float z = fabsf(x);
    const float near = z < 0.5f ? z : 0.5f;
    const float near2 = near * near;
    float small = (float)-0.0008548327023450852;
    small = small * near2 + (float)0.005223977625442188;
    small = small * near2 + (float)-0.026866170645131252;
    small = small * near2 + (float)0.11283791670955126;
    small = small * near2 + (float)-0.37612638903183754;
    small = small * near2 + (float)1.1283791670955126;
    small = small * near;
    const float t = 1.0f / (1.0f + (float)0.3275911 * z);
    float poly = (float)1.061405429;
    poly = poly * t + (float)-1.453152027;
    poly = poly * t + (float)1.421413741;
    poly = poly * t + (float)-0.284496736;
    poly = poly * t + (float)0.254829592;
    const float big = 1.0f - poly * t * gradc_expf_nonpositive(-z * z);
    const float r = z < 0.5f ? small : big;
    return gradc_bits_to_float(gradc_float_to_bits(r) | (gradc_float_to_bits(x) & 0x80000000u));
}

/* Integer floor division and remainder as numpy computes them: the quotient rounds toward
 * -inf, the remainder takes the divisor's sign, division by zero gives 0, and
 * INT64_MIN / -1 wraps (a plain C division would trap). */
GRADC_FN int64_t gradc_floordiv_int(int64_t a, int64_t b)
{
    if (b == 0) {
        return 0;
    }
    if (b == -1) {
        return (int64_t)(0 - (uint64_t)a);
    }
    int64_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

GRADC_FN int64_t gradc_remainder_int(int64_t a, int64_t b)
{
    if (b == 0 || b == -1) {
        return 0;
    }
    int64_t r = a % b;
    return (r != 0 && ((r < 0) != (b < 0))) ? r + b : r;
}

/* Counter-based uniform [0, 1): element `index` of the draw with `seed` is SplitMix64's
 * output at that position, reduced to 24 (float) or 53 (double) bits. gradc/counter_rng.py
 * computes the same values for eager dropout, so compiled and eager masks are identical. */
GRADC_FN uint64_t gradc_splitmix64(int64_t seed, int64_t index)
{
    uint64_t z = (uint64_t)index * 0x9E3779B97F4A7C15ULL + (uint64_t)seed;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

GRADC_FN float gradc_uniformf(int64_t seed, int64_t index)
{
    return (float)(gradc_splitmix64(seed, index) >> 40) * 0x1.0p-24f;
}

GRADC_FN double gradc_uniform(int64_t seed, int64_t index)
{
    return (double)(gradc_splitmix64(seed, index) >> 11) * 0x1.0p-53;
}

#endif /* GRADC_RUNTIME_H */
