#if canImport(Glibc)
    import Glibc
#endif

/// A large Float32 buffer whose memory the kernel may back with transparent huge pages
/// (`madvise(MADV_HUGEPAGE)` on a 2 MiB-aligned block): first touching it costs one fault per
/// 2 MiB instead of one per 4 KiB. For long-lived scratch that is filled once and read many times,
/// such as a Lanczos basis (tens of megabytes, written a vector at a time). Its contents start
/// undefined: write before reading.
public final class HugePageBuffer: @unchecked Sendable {
    public let capacity: Int
    public let pointer: UnsafeMutablePointer<Float>

    /// The alignment, and the unit the kernel's huge pages come in on x86-64.
    static let hugePageBytes = 2 << 20

    public init(capacity: Int) {
        precondition(capacity >= 0, "negative capacity \(capacity)")
        self.capacity = capacity
        let bytes = max(1, capacity) * MemoryLayout<Float>.stride
        #if canImport(Glibc)
            let rounded = (bytes + Self.hugePageBytes - 1) / Self.hugePageBytes * Self.hugePageBytes
            var allocated: UnsafeMutableRawPointer?
            guard posix_memalign(&allocated, Self.hugePageBytes, rounded) == 0, let raw = allocated else {
                fatalError("out of memory: \(rounded) bytes for a huge-page buffer")
            }
            _ = madvise(raw, rounded, 14)  // MADV_HUGEPAGE; only advice, so a refusal is harmless
        #else
            let raw = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        #endif
        pointer = raw.bindMemory(to: Float.self, capacity: max(1, capacity))
    }

    deinit {
        #if canImport(Glibc)
            free(pointer)
        #else
            pointer.deallocate()
        #endif
    }
}
