#ifndef DSGD_KERNELS_H
#define DSGD_KERNELS_H

/* Loops that read whole models every round (the consensus distance's, and publishing a model
   into shared memory), in C so that they can use AVX2 or AVX-512 when the CPU has it (chosen at
   run time; Swift code is built for baseline x86-64). Every variant does each value's operations of
   the portable loop in the same order, so the bits do not depend on the CPU: no fused
   multiply-add, and the same partial sums. */

/* Asks the CPU to bring every cache line of the `count` bytes at `address` into its caches for
   reading soon. A hint only: it never faults and changes no value. */
static inline void dsgd_prefetch_range(const void *address, long count) {
    const char *byte = (const char *)address;
    for (long offset = 0; offset < count; offset += 64) __builtin_prefetch(byte + offset, 0, 3);
}

/* The instruction sets the loops come in; every variant gives the portable loop's bits. A
   function asked for a variant this CPU lacks uses the best one it has. */
enum { DSGD_KERNELS_PORTABLE = 0, DSGD_KERNELS_AVX2 = 1, DSGD_KERNELS_AVX512 = 2 };

/* The widest variant this CPU runs (the one to use; tests ask for each in turn). */
int dsgd_kernels_best(void);

/* total[j] += weight * (double)x[j] for j < count (a multiply and an add, each rounded). With
   `next` non-null, the `count` floats there are hinted into cache meanwhile. */
void dsgd_accumulate(int variant, const float *x, double weight, double *total, long count, const float *next);

/* Σ_j ((double)(x[j] - y[j]))², the difference rounded to float, squared and summed in double:
   32 partial sums (lane k takes j ≡ k mod 32 over the whole groups of 32), added in lane
   order starting from -0.0, then the remaining values one by one. */
double dsgd_squared_distance(int variant, const float *x, const float *y, long count);

/* mean[j] = (float)(total[j] / divisor) for j < count (a correctly rounded division, then one
   rounding to float; a divisor of 1 leaves the total as it is). */
void dsgd_store_quotient(int variant, const double *total, double divisor, float *mean, long count);

/* target[j] = source[j] for j < count (the buffers do not overlap), in one pass that also checks
   every value: returns 1 when all are finite, 0 when any is NaN or ±Inf (exponent bits all set). */
int dsgd_copy_checking_finite(int variant, const float *source, float *target, long count);
#endif
