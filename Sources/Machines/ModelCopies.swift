import Synchronization

/// Model-sized Float32 arrays that go from the coordinator's loop to its evaluation and sharpness
/// threads and come back. A job's copies of x̄ and of the workers' models are written into arrays
/// an earlier job returned, so an evaluation round does not cost every copied model fresh pages
/// (their page faults fall on the coordinator's loop: about 1 % of the machine with evaluation
/// every 100 rounds on the ring of 8, `perf`). At most `capacityBytes` of arrays wait here.
/// An array that is still shared when it is reused is copied on write, as any array is: reuse
/// saves work, it never changes a value.
public final class ModelCopies: Sendable {
    private let spares = Mutex<[[Float]]>([])
    /// The most bytes of arrays kept for reuse.
    public let capacityBytes: Int

    public init(capacityBytes: Int = 64 << 20) {
        precondition(capacityBytes >= 0, "negative capacity \(capacityBytes)")
        self.capacityBytes = capacityBytes
    }

    /// `values` as an array: a returned array of the same length rewritten, or a new one.
    public func copy(_ values: UnsafeBufferPointer<Float>) -> [Float] {
        var spare = spares.withLock { spares -> [Float]? in
            spares.lastIndex { $0.count == values.count }.map { spares.remove(at: $0) }
        }
        // Moved out of the optional, so this is its only reference and it is written in place.
        guard let source = values.baseAddress, var array = spare.take() else { return Array(values) }
        array.withUnsafeMutableBufferPointer { $0.baseAddress!.update(from: source, count: values.count) }
        return array
    }

    /// Takes back a finished job's arrays, as many as fit within `capacityBytes`.
    public func recycle(_ arrays: [[Float]]) {
        spares.withLock { spares in
            var bytes = spares.reduce(0) { $0 + $1.count * MemoryLayout<Float>.stride }
            for array in arrays where !array.isEmpty {
                let size = array.count * MemoryLayout<Float>.stride
                guard bytes + size <= capacityBytes else { continue }
                spares.append(array)
                bytes += size
            }
        }
    }

    /// Bytes of arrays waiting for reuse.
    public var keptBytes: Int { spares.withLock { $0.reduce(0) { $0 + $1.count * MemoryLayout<Float>.stride } } }
}
