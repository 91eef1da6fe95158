#ifndef DSGD_SHARED_MEMORY_H
#define DSGD_SHARED_MEMORY_H

#include <stdint.h>

/* Release/acquire access to 64-bit stamps in memory shared between processes (a seqlock's
   sequence word): Swift's atomics cannot be placed on a pointer into a mapped segment. */
uint64_t dsgd_load_acquire_u64(const uint64_t *address);
void dsgd_store_release_u64(uint64_t *address, uint64_t value);
/* Orders the data reads of a seqlock reader before its second load of the stamp. */
void dsgd_fence_acquire(void);

#endif
