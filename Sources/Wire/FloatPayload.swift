import LearningCore

/// An immutable, reference-counted block of Float32 values: a model on the wire.
///
/// Made once per send (one copy of the live parameters, which keep changing) and then shared by
/// every out-neighbour's message and by the in-memory transport without further copies. On
/// receive it can wrap the transport's own buffer (e.g. a ZeroMQ message) via `owner`.
public final class FloatPayload: @unchecked Sendable {
    public let pointer: UnsafePointer<Float>
    public let count: Int
    private let release: (() -> Void)?
    private var cachedNonZeroCount: Int?
    /// Whether the sparse form is smaller (computed once: the payload is immutable).
    fileprivate var cachedSparseIsWorthwhile: Bool?
    /// For memory that another process may rewrite (a shared-memory slot): why the values are no
    /// longer the ones received, or nil while they still are.
    private let integrity: (() -> String?)?

    /// Copies `values` into a new payload.
    public init(copying values: UnsafeBufferPointer<Float>) {
        let storage = UnsafeMutablePointer<Float>.allocate(capacity: max(values.count, 1))
        if let base = values.baseAddress { storage.update(from: base, count: values.count) }
        pointer = UnsafePointer(storage)
        count = values.count
        release = { storage.deallocate() }
        integrity = nil
        knownFinite = nil
    }

    public convenience init(copying values: [Float]) {
        self.init(copying: values.withUnsafeBufferPointer { $0 })
    }

    /// Wraps memory owned elsewhere; `release` runs when the last reference goes. `integrity`
    /// (for memory another process may rewrite) says why the values changed since they were
    /// received, or nil while they have not.
    /// `knownFinite`: whether every value is finite, when the maker already knows (a publisher
    /// that checked while copying), so `isFinite` need not scan again.
    public init(
        wrapping pointer: UnsafePointer<Float>, count: Int, release: (() -> Void)?,
        integrity: (() -> String?)? = nil, knownFinite: Bool? = nil
    ) {
        self.pointer = pointer
        self.count = count
        self.release = release
        self.integrity = integrity
        self.knownFinite = knownFinite
    }

    private let knownFinite: Bool?

    /// Why the values read so far may not be the ones sent (a shared-memory slot rewritten by its
    /// owner before this reader was done), or nil. A reader calls it after reading: a non-nil
    /// answer means what it computed from the payload is void.
    public func damage() -> String? { integrity?() }

    /// Whether the values live in memory another process owns (a shared-memory slot), valid only
    /// while the sender has not reused it: keep such a payload no longer than the round needs it.
    public var isBorrowed: Bool { integrity != nil }

    deinit { release?() }

    public var buffer: UnsafeBufferPointer<Float> { UnsafeBufferPointer(start: pointer, count: count) }
    public var byteCount: Int { count * MemoryLayout<Float>.size }
    public var array: [Float] { withExtendedLifetime(self) { Array(buffer) } }

    /// True when every value is finite (no NaN or ±Inf); checked for every model received, so a
    /// maker that already knows says so (`knownFinite`) and it is not scanned again.
    public var isFinite: Bool {
        if let knownFinite { return knownFinite }
        return withExtendedLifetime(self) { allFinite(buffer) }
    }
}

extension FloatPayload {
    /// Values whose bit pattern is not +0.0 (computed once per payload: it is immutable).
    public var nonZeroCount: Int {
        if let cachedNonZeroCount { return cachedNonZeroCount }
        var nonZero = 0
        withExtendedLifetime(self) {
            for i in 0..<count where pointer[i].bitPattern != 0 { nonZero += 1 }
        }
        cachedNonZeroCount = nonZero
        return nonZero
    }

    /// Float32 slots on the wire: the sparse form when it is smaller (see `SparsePayload`).
    public var wireSlotCount: Int { SparsePayload.isWorthwhile(self) ? 1 + 2 * nonZeroCount : count }
}

/// The sparse wire form of a payload that is mostly zeros (a sparse shared part, masked personal
/// layers): slot 0 holds the dense length, then the indices of the values whose bit pattern is
/// not +0.0 (as UInt32 bit patterns, strictly increasing), then those values. Decoding gives the
/// dense payload back bit for bit (−0.0 is kept as a value).
public enum SparsePayload {
    /// Whether the sparse form is smaller than the dense one. A large payload whose strided sample
    /// of 1,024 values is over 3/4 non-zero is taken as dense without a full count (a dense model
    /// then costs no extra pass); the answer depends only on the payload, so every caller agrees.
    public static func isWorthwhile(_ payload: FloatPayload) -> Bool {
        if let known = payload.cachedSparseIsWorthwhile { return known }
        let answer = computeIsWorthwhile(payload)
        payload.cachedSparseIsWorthwhile = answer
        return answer
    }

    private static func computeIsWorthwhile(_ payload: FloatPayload) -> Bool {
        guard payload.count > 0, payload.count <= Int(UInt32.max) else { return false }
        if payload.count >= 4_096 {
            let stride = payload.count / 1_024
            var sampledNonZero = 0
            withExtendedLifetime(payload) {
                for k in 0..<1_024 where payload.pointer[k * stride].bitPattern != 0 { sampledNonZero += 1 }
            }
            if sampledNonZero > 768 { return false }
        }
        return 1 + 2 * payload.nonZeroCount < payload.count
    }

    public static func encode(_ payload: FloatPayload) -> FloatPayload {
        let nonZero = payload.nonZeroCount
        let slots = UnsafeMutablePointer<Float>.allocate(capacity: 1 + 2 * nonZero)
        slots[0] = Float(bitPattern: UInt32(payload.count))
        var position = 0
        withExtendedLifetime(payload) {
            for i in 0..<payload.count where payload.pointer[i].bitPattern != 0 {
                slots[1 + position] = Float(bitPattern: UInt32(i))
                slots[1 + nonZero + position] = payload.pointer[i]
                position += 1
            }
        }
        return FloatPayload(wrapping: UnsafePointer(slots), count: 1 + 2 * nonZero) { slots.deallocate() }
    }

    /// The dense payload of a sparse one, rejecting any slot layout that is not exactly the
    /// encoder's (odd slot count, an index out of range or out of order).
    public static func decode(_ slots: UnsafeBufferPointer<Float>) throws(WireError) -> FloatPayload {
        guard slots.count >= 1, slots.count % 2 == 1 else {
            throw WireError.malformed("sparse payload of \(slots.count) slots: expected 1 + 2·nonzeros")
        }
        let count = Int(slots[0].bitPattern)
        let nonZero = (slots.count - 1) / 2
        guard nonZero <= count else {
            throw WireError.malformed("sparse payload lists \(nonZero) values for a length of \(count)")
        }
        let storage = UnsafeMutablePointer<Float>.allocate(capacity: max(count, 1))
        storage.initialize(repeating: 0, count: count)
        var previous = -1
        for position in 0..<nonZero {
            let index = Int(slots[1 + position].bitPattern)
            guard index > previous, index < count else {
                storage.deallocate()
                throw WireError.malformed("sparse payload index \(index) out of range or out of order")
            }
            storage[index] = slots[1 + nonZero + position]
            previous = index
        }
        return FloatPayload(wrapping: UnsafePointer(storage), count: count) { storage.deallocate() }
    }
}
