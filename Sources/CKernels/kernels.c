#include "dsgd_kernels.h"

#include <immintrin.h>
#include <string.h>

/* a * b + c must stay a multiply and an add: the bits may not depend on the CPU. */
#pragma clang fp contract(off)

/* The lane sums of the squared distance: lane k takes j ≡ k (mod SQUARED_DISTANCE_LANES) over the
   whole groups. Thirty-two, so the AVX2 loop keeps eight independent sums of four in flight: with
   fewer, each add waits for the previous one (the coordinator's Ξ² was latency-bound, `perf`). */
#define SQUARED_DISTANCE_LANES 32

/* The lane sums added in lane order from -0.0, then values j..count-1 one by one. */
static inline double finish_squared_distance(
    const double partial[SQUARED_DISTANCE_LANES], const float *x, const float *y, long j, long count) {
    double total = -0.0;
    for (int k = 0; k < SQUARED_DISTANCE_LANES; k++) total += partial[k];
    for (; j < count; j++) {
        double d = (double)(x[j] - y[j]);
        total += d * d;
    }
    return total;
}

static void accumulate_portable(const float *x, double weight, double *total, long count, const float *next) {
    for (long j = 0; j < count; j++) {
        if (next && (j & 15) == 0) dsgd_prefetch_range(next + j, 64);
        total[j] += weight * (double)x[j];
    }
}

static double squared_distance_portable(const float *x, const float *y, long count) {
    double partial[SQUARED_DISTANCE_LANES] = {0};
    long j = 0;
    for (; j + SQUARED_DISTANCE_LANES <= count; j += SQUARED_DISTANCE_LANES) {
        for (int k = 0; k < SQUARED_DISTANCE_LANES; k++) {
            double d = (double)(x[j + k] - y[j + k]);
            partial[k] += d * d;
        }
    }
    return finish_squared_distance(partial, x, y, j, count);
}

static void store_quotient_portable(const double *total, double divisor, float *mean, long count) {
    for (long j = 0; j < count; j++) mean[j] = (float)(total[j] / divisor);
}

__attribute__((target("avx2"))) static void store_quotient_avx2(
    const double *total, double divisor, float *mean, long count) {
    const __m256d d = _mm256_set1_pd(divisor);
    long j = 0;
    for (; j + 4 <= count; j += 4) _mm_storeu_ps(mean + j, _mm256_cvtpd_ps(_mm256_div_pd(_mm256_loadu_pd(total + j), d)));
    for (; j < count; j++) mean[j] = (float)(total[j] / divisor);
}

__attribute__((target("avx2"))) static void accumulate_avx2(
    const float *x, double weight, double *total, long count, const float *next) {
    const __m256d w = _mm256_set1_pd(weight);
    long j = 0;
    for (; j + 16 <= count; j += 16) {
        if (next) dsgd_prefetch_range(next + j, 64);
        for (long h = j; h < j + 16; h += 4) {
            __m256d values = _mm256_cvtps_pd(_mm_loadu_ps(x + h));
            _mm256_storeu_pd(total + h, _mm256_add_pd(_mm256_loadu_pd(total + h), _mm256_mul_pd(w, values)));
        }
    }
    for (; j < count; j++) total[j] += weight * (double)x[j];
}

__attribute__((target("avx2"))) static double squared_distance_avx2(const float *x, const float *y, long count) {
    /* sums[2q] holds lanes 8q..8q+3, sums[2q + 1] lanes 8q+4..8q+7: stored in order, lane order. */
    __m256d sums[SQUARED_DISTANCE_LANES / 4];
    for (int m = 0; m < SQUARED_DISTANCE_LANES / 4; m++) sums[m] = _mm256_setzero_pd();
    long j = 0;
    for (; j + SQUARED_DISTANCE_LANES <= count; j += SQUARED_DISTANCE_LANES) {
        for (int q = 0; q < SQUARED_DISTANCE_LANES / 8; q++) {
            __m256 d = _mm256_sub_ps(_mm256_loadu_ps(x + j + 8 * q), _mm256_loadu_ps(y + j + 8 * q));
            __m256d d0 = _mm256_cvtps_pd(_mm256_castps256_ps128(d));
            __m256d d1 = _mm256_cvtps_pd(_mm256_extractf128_ps(d, 1));
            sums[2 * q] = _mm256_add_pd(sums[2 * q], _mm256_mul_pd(d0, d0));
            sums[2 * q + 1] = _mm256_add_pd(sums[2 * q + 1], _mm256_mul_pd(d1, d1));
        }
    }
    double partial[SQUARED_DISTANCE_LANES];
    for (int m = 0; m < SQUARED_DISTANCE_LANES / 4; m++) _mm256_storeu_pd(partial + 4 * m, sums[m]);
    return finish_squared_distance(partial, x, y, j, count);
}

/* The AVX-512 forms (16 floats or 8 doubles a register): the same operations on every value as the
   AVX2 and portable loops, and for the squared distance the same 32 lane sums (register m holds
   lanes 8m..8m+7). */
__attribute__((target("avx512f"))) static void accumulate_avx512(
    const float *x, double weight, double *total, long count, const float *next) {
    const __m512d w = _mm512_set1_pd(weight);
    long j = 0;
    for (; j + 16 <= count; j += 16) {
        if (next) dsgd_prefetch_range(next + j, 64);
        for (long h = j; h < j + 16; h += 8) {
            __m512d values = _mm512_cvtps_pd(_mm256_loadu_ps(x + h));
            _mm512_storeu_pd(total + h, _mm512_add_pd(_mm512_loadu_pd(total + h), _mm512_mul_pd(w, values)));
        }
    }
    for (; j < count; j++) total[j] += weight * (double)x[j];
}

__attribute__((target("avx512f"))) static double squared_distance_avx512(const float *x, const float *y, long count) {
    __m512d sums[SQUARED_DISTANCE_LANES / 8];
    for (int m = 0; m < SQUARED_DISTANCE_LANES / 8; m++) sums[m] = _mm512_setzero_pd();
    long j = 0;
    for (; j + SQUARED_DISTANCE_LANES <= count; j += SQUARED_DISTANCE_LANES) {
        for (int m = 0; m < SQUARED_DISTANCE_LANES / 8; m++) {
            __m256 d = _mm256_sub_ps(_mm256_loadu_ps(x + j + 8 * m), _mm256_loadu_ps(y + j + 8 * m));
            __m512d wide = _mm512_cvtps_pd(d);
            sums[m] = _mm512_add_pd(sums[m], _mm512_mul_pd(wide, wide));
        }
    }
    double partial[SQUARED_DISTANCE_LANES];
    for (int m = 0; m < SQUARED_DISTANCE_LANES / 8; m++) _mm512_storeu_pd(partial + 8 * m, sums[m]);
    return finish_squared_distance(partial, x, y, j, count);
}

__attribute__((target("avx512f"))) static void store_quotient_avx512(
    const double *total, double divisor, float *mean, long count) {
    const __m512d d = _mm512_set1_pd(divisor);
    long j = 0;
    for (; j + 8 <= count; j += 8) _mm256_storeu_ps(mean + j, _mm512_cvtpd_ps(_mm512_div_pd(_mm512_loadu_pd(total + j), d)));
    for (; j < count; j++) mean[j] = (float)(total[j] / divisor);
}

static int copy_checking_finite_portable(const float *source, float *target, long count) {
    unsigned flagged = 0;
    for (long j = 0; j < count; j++) {
        unsigned bits;
        memcpy(&bits, source + j, sizeof bits);  /* the value's bits, without aliasing a float */
        target[j] = source[j];
        flagged |= (bits & 0x7F800000u) == 0x7F800000u;
    }
    return !flagged;
}

__attribute__((target("avx2"))) static int copy_checking_finite_avx2(const float *source, float *target, long count) {
    const __m256i exponent = _mm256_set1_epi32(0x7F800000);
    __m256i flagged = _mm256_setzero_si256();
    long j = 0;
    for (; j + 32 <= count; j += 32) {
        for (long h = j; h < j + 32; h += 8) {
            __m256i values = _mm256_loadu_si256((const __m256i *)(source + h));
            _mm256_storeu_si256((__m256i *)(target + h), values);
            flagged = _mm256_or_si256(
                flagged, _mm256_cmpeq_epi32(_mm256_and_si256(values, exponent), exponent));
        }
    }
    int finite = _mm256_testz_si256(flagged, flagged);
    return copy_checking_finite_portable(source + j, target + j, count - j) && finite;
}

int dsgd_kernels_best(void) {
    static int known = -1;
    if (known < 0) {
        __builtin_cpu_init();
        known = __builtin_cpu_supports("avx512f") ? DSGD_KERNELS_AVX512
                : __builtin_cpu_supports("avx2")  ? DSGD_KERNELS_AVX2
                                                  : DSGD_KERNELS_PORTABLE;
    }
    return known;
}

/* The variant asked for, or the best this CPU has when it has not that one. */
static inline int usable(int variant) {
    int best = dsgd_kernels_best();
    return variant < best ? variant : best;
}

void dsgd_accumulate(int variant, const float *x, double weight, double *total, long count, const float *next) {
    switch (usable(variant)) {
    case DSGD_KERNELS_AVX512: accumulate_avx512(x, weight, total, count, next); break;
    case DSGD_KERNELS_AVX2: accumulate_avx2(x, weight, total, count, next); break;
    default: accumulate_portable(x, weight, total, count, next);
    }
}

double dsgd_squared_distance(int variant, const float *x, const float *y, long count) {
    switch (usable(variant)) {
    case DSGD_KERNELS_AVX512: return squared_distance_avx512(x, y, count);
    case DSGD_KERNELS_AVX2: return squared_distance_avx2(x, y, count);
    default: return squared_distance_portable(x, y, count);
    }
}

void dsgd_store_quotient(int variant, const double *total, double divisor, float *mean, long count) {
    switch (usable(variant)) {
    case DSGD_KERNELS_AVX512: store_quotient_avx512(total, divisor, mean, count); break;
    case DSGD_KERNELS_AVX2: store_quotient_avx2(total, divisor, mean, count); break;
    default: store_quotient_portable(total, divisor, mean, count);
    }
}

int dsgd_copy_checking_finite(int variant, const float *source, float *target, long count) {
    /* Bound by memory: AVX2 is as fast as it gets, so AVX-512 machines use it too. */
    return usable(variant) >= DSGD_KERNELS_AVX2 ? copy_checking_finite_avx2(source, target, count)
                                                : copy_checking_finite_portable(source, target, count);
}
