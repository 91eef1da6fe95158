/// An immutable, reference-counted block of Float32 values: a model on the wire.
///
/// Made once per send (one copy of the live parameters, which keep changing) and then shared by
/// every out-neighbour's message and by the in-memory transport without further copies. On
/// receive it can wrap the transport's own buffer (e.g. a ZeroMQ message) via `owner`.
public final class FloatPayload: @unchecked Sendable {
    public let pointer: UnsafePointer<Float>
    public let count: Int
    private let release: (() -> Void)?

    /// Copies `values` into a new payload.
    public init(copying values: UnsafeBufferPointer<Float>) {
        let storage = UnsafeMutablePointer<Float>.allocate(capacity: max(values.count, 1))
        if let base = values.baseAddress { storage.update(from: base, count: values.count) }
        pointer = UnsafePointer(storage)
        count = values.count
        release = { storage.deallocate() }
    }

    public convenience init(copying values: [Float]) {
        self.init(copying: values.withUnsafeBufferPointer { $0 })
    }

    /// Wraps memory owned elsewhere; `release` runs when the last reference goes.
    public init(wrapping pointer: UnsafePointer<Float>, count: Int, release: (() -> Void)?) {
        self.pointer = pointer
        self.count = count
        self.release = release
    }

    deinit { release?() }

    public var buffer: UnsafeBufferPointer<Float> { UnsafeBufferPointer(start: pointer, count: count) }
    public var byteCount: Int { count * MemoryLayout<Float>.size }
    public var array: [Float] { withExtendedLifetime(self) { Array(buffer) } }

    /// True when every value is finite (no NaN or ±Inf).
    public var isFinite: Bool {
        withExtendedLifetime(self) {
            for i in 0..<count where !pointer[i].isFinite { return false }
            return true
        }
    }
}
