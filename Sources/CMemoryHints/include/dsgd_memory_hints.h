#ifndef DSGD_MEMORY_HINTS_H
#define DSGD_MEMORY_HINTS_H

/* Asks the CPU to bring every cache line of the `count` bytes at `address` into its caches for
   reading soon. A hint only: it never faults and changes no value. */
static inline void dsgd_prefetch_range(const void *address, long count) {
    const char *byte = (const char *)address;
    for (long offset = 0; offset < count; offset += 64) __builtin_prefetch(byte + offset, 0, 3);
}

#endif
