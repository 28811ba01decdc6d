/* gradc_runtime.h: helpers that generated C kernels call.
 *
 * Each helper reproduces numpy's (and so gradc eager's) semantics where C's own
 * functions differ: NaN-propagating max/min (fmax/fmin drop NaN) and Python-style
 * floor division and remainder (the sign follows the divisor).
 * The `f` variants are the float32 versions, selected by the compiler's renderer.
 */
#ifndef GRADC_RUNTIME_H
#define GRADC_RUNTIME_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>

/* Operands are always plain variables or literals, so evaluating them twice is safe. */
#define gradc_max(a, b) (((a) != (a) || (a) > (b)) ? (a) : (b))
#define gradc_min(a, b) (((a) != (a) || (a) < (b)) ? (a) : (b))

static inline double gradc_floordiv(double a, double b)
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

static inline float gradc_floordivf(float a, float b)
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

static inline double gradc_remainder(double a, double b)
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

static inline float gradc_remainderf(float a, float b)
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

#endif /* GRADC_RUNTIME_H */
