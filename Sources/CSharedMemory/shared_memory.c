#include "dsgd_shared_memory.h"

uint64_t dsgd_load_acquire_u64(const uint64_t *address) { return __atomic_load_n(address, __ATOMIC_ACQUIRE); }

void dsgd_store_release_u64(uint64_t *address, uint64_t value) { __atomic_store_n(address, value, __ATOMIC_RELEASE); }

void dsgd_fence_acquire(void) { __atomic_thread_fence(__ATOMIC_ACQUIRE); }
