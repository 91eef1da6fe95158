/// A checkpoint's bytes: the exact state of a run's values written in a fixed order and read back
/// in the same order (little-endian, floats by their bit patterns, so a value read back is the
/// value written, bit for bit). Each part opens with a named section, so reading a checkpoint of
/// another layout fails at the first part that differs, naming it, instead of reading garbage.
public struct StateWriter: Sendable {
    public private(set) var bytes: [UInt8] = []

    public init() {}

    public mutating func section(_ name: String) { write(name) }

    public mutating func write(_ value: UInt64) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }
    public mutating func write(_ value: Int) { write(UInt64(bitPattern: Int64(value))) }
    public mutating func write(_ value: Double) { write(value.bitPattern) }
    public mutating func write(_ value: Float) { write(UInt64(value.bitPattern)) }
    public mutating func write(_ value: Bool) { write(UInt64(value ? 1 : 0)) }

    public mutating func write(_ value: String) { write(Array(value.utf8)) }

    public mutating func write(_ values: [UInt8]) {
        write(values.count)
        bytes.append(contentsOf: values)
    }

    public mutating func write(_ values: [Float]) {
        write(values.count)
        values.withUnsafeBytes { raw in
            #if _endian(little)
                bytes.append(contentsOf: raw)
            #else
                for value in values {
                    withUnsafeBytes(of: value.bitPattern.littleEndian) { bytes.append(contentsOf: $0) }
                }
            #endif
        }
    }

    public mutating func write(_ values: [Int]) {
        write(values.count)
        for value in values { write(value) }
    }

    public mutating func write(_ values: [Double]) {
        write(values.count)
        for value in values { write(value) }
    }

    public mutating func write(_ generator: SplitMix64) { write(generator.state) }
}

/// Reads what a `StateWriter` wrote, in the same order; every read is bounds-checked.
public struct StateReader: Sendable {
    private let bytes: [UInt8]
    public private(set) var offset = 0

    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    public var isAtEnd: Bool { offset == bytes.count }

    /// Fails unless the next part is the section `name`.
    public mutating func expectSection(_ name: String) throws(StateArchiveError) {
        let found = try readString()
        guard found == name else {
            throw StateArchiveError("expected the state of \(name), found the state of \(found)")
        }
    }

    private mutating func take(_ count: Int, _ what: String) throws(StateArchiveError) -> ArraySlice<UInt8> {
        guard count >= 0, count <= bytes.count - offset else {
            throw StateArchiveError("\(what): \(count) bytes needed at offset \(offset), \(bytes.count - offset) left")
        }
        defer { offset += count }
        return bytes[offset..<(offset + count)]
    }

    public mutating func readUInt64() throws(StateArchiveError) -> UInt64 {
        let slice = try take(8, "an integer")
        var value: UInt64 = 0
        for (index, byte) in slice.enumerated() { value |= UInt64(byte) << (8 * UInt64(index)) }
        return value
    }
    public mutating func readInt() throws(StateArchiveError) -> Int { Int(Int64(bitPattern: try readUInt64())) }
    public mutating func readDouble() throws(StateArchiveError) -> Double { Double(bitPattern: try readUInt64()) }
    public mutating func readFloat() throws(StateArchiveError) -> Float {
        let bits = try readUInt64()
        guard bits <= UInt64(UInt32.max) else { throw StateArchiveError("a float's bits out of range at \(offset)") }
        return Float(bitPattern: UInt32(bits))
    }
    public mutating func readBool() throws(StateArchiveError) -> Bool {
        switch try readUInt64() {
        case 0: return false
        case 1: return true
        case let other: throw StateArchiveError("a flag of value \(other) at offset \(offset - 8)")
        }
    }

    private mutating func readCount(_ what: String, bytesEach: Int) throws(StateArchiveError) -> Int {
        let count = try readInt()
        guard count >= 0, count <= (bytes.count - offset) / bytesEach else {
            throw StateArchiveError("\(what) of \(count) items at offset \(offset - 8) runs past the end")
        }
        return count
    }

    public mutating func readBytes() throws(StateArchiveError) -> [UInt8] {
        let count = try readCount("a byte string", bytesEach: 1)
        return Array(try take(count, "a byte string"))
    }

    public mutating func readString() throws(StateArchiveError) -> String {
        let raw = try readBytes()
        guard let text = String(validating: raw, as: UTF8.self) else {
            throw StateArchiveError("a name that is not UTF-8 at offset \(offset)")
        }
        return text
    }

    public mutating func readFloats() throws(StateArchiveError) -> [Float] {
        let count = try readCount("a float vector", bytesEach: 4)
        let slice = try take(4 * count, "a float vector")
        return [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            slice.withUnsafeBytes { raw in
                for index in 0..<count {
                    buffer[index] = Float(
                        bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * index, as: UInt32.self)))
                }
            }
            initialized = count
        }
    }

    /// A float vector of exactly `count` values (a model, an optimizer's trace), named for the error.
    public mutating func readFloats(count: Int, _ what: String) throws(StateArchiveError) -> [Float] {
        let values = try readFloats()
        guard values.count == count else {
            throw StateArchiveError("\(what) has \(values.count) values, this run's has \(count)")
        }
        return values
    }

    public mutating func readInts() throws(StateArchiveError) -> [Int] {
        let count = try readCount("an integer vector", bytesEach: 8)
        var values: [Int] = []
        values.reserveCapacity(count)
        for _ in 0..<count { values.append(try readInt()) }
        return values
    }

    public mutating func readDoubles() throws(StateArchiveError) -> [Double] {
        let count = try readCount("a double vector", bytesEach: 8)
        var values: [Double] = []
        values.reserveCapacity(count)
        for _ in 0..<count { values.append(try readDouble()) }
        return values
    }

    public mutating func readGenerator() throws(StateArchiveError) -> SplitMix64 {
        // The generator's whole state is its counter; `init(seed:)` sets exactly that.
        SplitMix64(seed: try readUInt64())
    }
}

public struct StateArchiveError: Error, CustomStringConvertible, Equatable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// A value whose whole state a checkpoint holds: `save` writes it, `restore` puts it back into a
/// value built from the same configuration, so the continuation is bit for bit the same.
public protocol Checkpointable {
    func save(to writer: inout StateWriter)
    mutating func restore(from reader: inout StateReader) throws(StateArchiveError)
}
