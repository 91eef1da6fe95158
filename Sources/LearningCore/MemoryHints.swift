import CMemoryHints

/// Asks the CPU to bring `count` values from `values` into its caches for reading soon (a hint:
/// no value changes, and no address is dereferenced). Loops that read models another process has
/// just written (shared-memory slots) call it one model ahead: x̄'s sums over n such models were
/// stalled on those reads (`perf`), which the hardware prefetcher, stopping at every 4 KiB page,
/// does not hide.
@inline(__always)
public func prefetchForReading(_ values: UnsafePointer<Float>, count: Int) {
    dsgd_prefetch_range(values, count * MemoryLayout<Float>.stride)
}
