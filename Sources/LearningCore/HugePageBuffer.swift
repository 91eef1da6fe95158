#if canImport(Glibc)
    import Glibc
#endif

/// A large Float32 buffer whose memory the kernel may back with transparent huge pages: from
/// 2 MiB on it is 2 MiB-aligned and its whole 2 MiB blocks are advised `MADV_HUGEPAGE`, so first
/// touching them costs one fault per 2 MiB instead of one per 4 KiB (smaller buffers are ordinary
/// allocations). For long-lived scratch that is filled once and read many times, such as a Lanczos
/// basis (tens of megabytes, written a vector at a time). Its contents start undefined: write
/// before reading.
public final class HugePageBuffer: @unchecked Sendable {
    public let capacity: Int
    public let pointer: UnsafeMutablePointer<Float>

    /// The alignment, and the unit the kernel's huge pages come in on x86-64.
    public static let hugePageBytes = 2 << 20

    public init(capacity: Int) {
        precondition(capacity >= 0, "negative capacity \(capacity)")
        self.capacity = capacity
        let bytes = max(1, capacity) * MemoryLayout<Float>.stride
        #if canImport(Glibc)
            var allocated: UnsafeMutableRawPointer?
            guard posix_memalign(&allocated, bytes >= Self.hugePageBytes ? Self.hugePageBytes : 64, bytes) == 0,
                let raw = allocated
            else {
                fatalError("out of memory: \(bytes) bytes for a huge-page buffer")
            }
            Self.advise(UnsafeMutableRawBufferPointer(start: raw, count: bytes))
        #else
            let raw = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        #endif
        pointer = raw.bindMemory(to: Float.self, capacity: max(1, capacity))
    }

    /// Advises the whole 2 MiB blocks inside `region` for transparent huge pages (a no-op for
    /// less; only advice: a kernel without transparent huge pages refuses it, harmlessly). Pages already touched keep their size until the
    /// kernel collapses them, so advise a fresh allocation before writing it.
    public static func advise(_ region: UnsafeMutableRawBufferPointer) {
        #if canImport(Glibc)
            guard let base = region.baseAddress else { return }
            let start = (Int(bitPattern: base) + hugePageBytes - 1) / hugePageBytes * hugePageBytes
            let end = (Int(bitPattern: base) + region.count) / hugePageBytes * hugePageBytes
            guard end > start, let aligned = UnsafeMutableRawPointer(bitPattern: start) else { return }
            _ = madvise(aligned, end - start, 14)  // MADV_HUGEPAGE
        #endif
    }

    deinit {
        #if canImport(Glibc)
            free(pointer)
        #else
            pointer.deallocate()
        #endif
    }
}
