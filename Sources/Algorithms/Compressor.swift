import LearningCore

/// A compression operator Q for CHOCO-SGD (Koloskova, Stich and Jaggi, ICML 2019), each with the
/// contraction of their Assumption 1, E‖Q(x) − x‖² ≤ (1 − δ)‖x‖² for some δ ∈ (0, 1]:
/// - `identity`: Q(x) = x, δ = 1.
/// - `topK(ratio:)`: the k = ⌈ratio·d⌉ coordinates of largest magnitude (ties to the lower
///   index), the rest zero; deterministically ‖Q(x) − x‖² ≤ (1 − k/d)‖x‖².
/// - `randomK(ratio:)`: k coordinates drawn uniformly without replacement, not rescaled;
///   E‖Q(x) − x‖² = (1 − k/d)‖x‖².
/// - `sign`: (‖x‖₁/d)·sign(x) (sign(0) = +1); ‖Q(x) − x‖² = ‖x‖² − ‖x‖₁²/d exactly, so
///   δ = ‖x‖₁²/(d‖x‖²) ≥ 1/d.
/// - `qsgd(levels: s)`: QSGD's unbiased stochastic rounding to s levels (Alistarh et al., NeurIPS
///   2017), divided by τ = 1 + min(d/s², √d/s): since E‖Q_s(x)‖² ≤ τ‖x‖², Q_s/τ contracts with
///   δ = 1/τ (Koloskova et al., Section 3).
public enum Compressor: Sendable, Hashable, CustomStringConvertible {
    case identity
    case topK(ratio: Double)
    case randomK(ratio: Double)
    case sign
    case qsgd(levels: Int)

    /// The largest QSGD level count (levels travel as at most 8 bits with their sign).
    public static let maxLevels = 127

    /// Parses `identity`, `top-k:RATIO`, `random-k:RATIO`, `sign` or `qsgd:LEVELS`.
    public init(parsing text: String) throws(CompressorError) {
        let parts = text.split(separator: ":", maxSplits: 1).map(String.init)
        let name = parts.first ?? ""
        let argument = parts.count > 1 ? parts[1] : nil
        func ratio() throws(CompressorError) -> Double {
            guard let argument, let value = Double(argument), value > 0, value <= 1 else {
                throw CompressorError(
                    "compressor '\(text)': \(name) needs a ratio in (0, 1] after the colon, e.g. \(name):0.01")
            }
            return value
        }
        switch name {
        case "identity" where argument == nil: self = .identity
        case "sign" where argument == nil: self = .sign
        case "top-k": self = .topK(ratio: try ratio())
        case "random-k": self = .randomK(ratio: try ratio())
        case "qsgd":
            guard let argument, let levels = Int(argument), (1...Self.maxLevels).contains(levels) else {
                throw CompressorError(
                    "compressor '\(text)': qsgd needs a level count from 1 to \(Self.maxLevels) after the colon, e.g. qsgd:16"
                )
            }
            self = .qsgd(levels: levels)
        default:
            throw CompressorError(
                "unknown compressor '\(text)' (expected identity, top-k:RATIO, random-k:RATIO, sign or qsgd:LEVELS)")
        }
    }

    public var description: String {
        switch self {
        case .identity: "identity"
        case .topK(let ratio): "top-k:\(ratio)"
        case .randomK(let ratio): "random-k:\(ratio)"
        case .sign: "sign"
        case .qsgd(let levels): "qsgd:\(levels)"
        }
    }

    /// Coordinates top-k and random-k keep of `count`: ⌈ratio·count⌉, at least 1.
    public static func keptCount(ratio: Double, of count: Int) -> Int {
        // The small offset keeps a ratio·count that is an integer up to rounding from rounding up.
        max(1, min(count, Int((ratio * Double(count) - 1e-9).rounded(.up))))
    }

    /// QSGD's τ = 1 + min(d/s², √d/s) for d coordinates and s levels.
    public static func qsgdTau(levels: Int, count: Int) -> Double {
        let d = Double(count)
        let s = Double(levels)
        return 1 + min(d / (s * s), d.squareRoot() / s)
    }

    /// Q(values). Random compressors draw from `generator` (seeded by the caller, so a run is
    /// reproducible).
    public func compress(_ values: UnsafeBufferPointer<Float>, generator: inout SplitMix64) -> CompressedVector {
        let d = values.count
        switch self {
        case .identity:
            return CompressedVector(count: d, content: .dense(Array(values)))
        case .topK(let ratio):
            let indices = Self.largestMagnitudes(values, keeping: Self.keptCount(ratio: ratio, of: d))
            return CompressedVector(
                count: d, content: .sparse(indices: indices, values: indices.map { values[Int($0)] }))
        case .randomK(let ratio):
            let k = Self.keptCount(ratio: ratio, of: d)
            // Partial Fisher–Yates: the first k of a uniformly shuffled 0..<d.
            var order = [UInt32](0..<UInt32(d))
            for i in 0..<k {
                let j = i + Int(generator.next() % UInt64(d - i))
                order.swapAt(i, j)
            }
            let indices = order[0..<k].sorted()
            return CompressedVector(
                count: d, content: .sparse(indices: indices, values: indices.map { values[Int($0)] }))
        case .sign:
            var l1 = 0.0
            for v in values { l1 += Double(abs(v)) }
            var bits = [UInt8](repeating: 0, count: (d + 7) / 8)
            for i in 0..<d where values[i] < 0 { bits[i >> 3] |= 1 << UInt8(i & 7) }
            return CompressedVector(count: d, content: .signs(scale: Float(l1 / Double(max(d, 1))), bits: bits))
        case .qsgd(let s):
            var squares = 0.0
            for v in values { squares += Double(v) * Double(v) }
            let norm = squares.squareRoot()
            var levels = [Int8](repeating: 0, count: d)
            if norm > 0 {
                for i in 0..<d {
                    let scaled = Double(abs(values[i])) / norm * Double(s)
                    let lower = scaled.rounded(.down)
                    var level = Int(lower)
                    if generator.nextUnitDouble() < scaled - lower { level += 1 }
                    level = min(level, s)
                    levels[i] = Int8(values[i] < 0 ? -level : level)
                }
            }
            let scale = norm / (Double(s) * Self.qsgdTau(levels: s, count: d))
            return CompressedVector(count: d, content: .levels(levels: s, scale: Float(scale), values: levels))
        }
    }

    /// The indices (ascending) of the k entries of largest magnitude, ties to the lower index.
    /// A radix select on the magnitudes' bit patterns (for finite non-negative floats the
    /// patterns order as the values): a histogram of the high 16 bits finds the bucket of the k-th
    /// largest, a histogram of the low 16 bits within it the exact threshold; three linear passes.
    static func largestMagnitudes(_ values: UnsafeBufferPointer<Float>, keeping k: Int) -> [UInt32] {
        let d = values.count
        if k >= d { return [UInt32](0..<UInt32(d)) }
        var bits = [UInt32](repeating: 0, count: d)
        var high = [Int](repeating: 0, count: 1 << 16)
        bits.withUnsafeMutableBufferPointer { bits in
            for i in 0..<d {
                let pattern = values[i].bitPattern & 0x7FFF_FFFF
                bits[i] = pattern
                high[Int(pattern >> 16)] += 1
            }
        }
        // The bucket holding the k-th largest, and how many lie above it.
        var above = 0
        var bucket = (1 << 16) - 1
        while above + high[bucket] < k {
            above += high[bucket]
            bucket -= 1
        }
        var low = [Int](repeating: 0, count: 1 << 16)
        for pattern in bits where Int(pattern >> 16) == bucket { low[Int(pattern & 0xFFFF)] += 1 }
        var lowValue = (1 << 16) - 1
        while above + low[lowValue] < k {
            above += low[lowValue]
            lowValue -= 1
        }
        let threshold = UInt32(bucket) << 16 | UInt32(lowValue)
        // `above` entries exceed the threshold; the rest of the k are ties, lowest indices first.
        var ties = k - above
        var indices: [UInt32] = []
        indices.reserveCapacity(k)
        for (i, pattern) in bits.enumerated() {
            if pattern > threshold {
                indices.append(UInt32(i))
            } else if pattern == threshold && ties > 0 {
                indices.append(UInt32(i))
                ties -= 1
            }
        }
        return indices
    }
}

extension Compressor: Codable {
    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        do { self = try Compressor(parsing: text) } catch {
            throw DecodingError.dataCorrupted(
                DecodingError.Context(codingPath: decoder.codingPath, debugDescription: error.message))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

public struct CompressorError: Error, CustomStringConvertible, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// A compressed vector Q(x) as it travels: its encoding is what a message carries, and its size
/// is what the run counts as sent.
public struct CompressedVector: Sendable, Equatable {
    public enum Content: Sendable, Equatable {
        /// The identity's output: all d values.
        case dense([Float])
        /// Top-k or random-k: ascending indices and their values.
        case sparse(indices: [UInt32], values: [Float])
        /// scale·(±1) per coordinate; bit i (little-endian within bytes) set means −.
        case signs(scale: Float, bits: [UInt8])
        /// scale·level per coordinate, levels in −s…s.
        case levels(levels: Int, scale: Float, values: [Int8])
    }

    /// d, the uncompressed length.
    public let count: Int
    public let content: Content

    public init(count: Int, content: Content) {
        self.count = count
        self.content = content
    }

    private enum Tag: UInt8 {
        case dense = 0
        case sparse = 1
        case signs = 2
        case levels = 3
    }

    /// Bits per QSGD level with its sign: enough for the 2s + 1 values −s…s.
    static func levelWidth(_ s: Int) -> Int {
        var width = 1
        while (1 << width) < 2 * s + 1 { width += 1 }
        return width
    }

    /// The bytes a message carries (little-endian): a tag byte, then the dense values; or k, the
    /// k indices and the k values; or the scale and d sign bits; or s, the scale and d levels of
    /// ⌈log₂(2s + 1)⌉ bits each.
    public func encoded() -> [UInt8] {
        var bytes: [UInt8] = []
        func put<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
        func put(_ v: Float) { put(v.bitPattern) }
        switch content {
        case .dense(let values):
            bytes.reserveCapacity(1 + 4 * values.count)
            bytes.append(Tag.dense.rawValue)
            values.withUnsafeBytes { raw in
                // Float32 is little-endian on every platform dsgd builds for; keep the check honest.
                precondition(UInt32(1).littleEndian == 1)
                bytes.append(contentsOf: raw)
            }
        case .sparse(let indices, let values):
            let k = indices.count
            bytes = [UInt8](repeating: 0, count: 5 + 8 * k)
            bytes[0] = Tag.sparse.rawValue
            bytes.withUnsafeMutableBytes { raw in
                raw.storeBytes(of: UInt32(k).littleEndian, toByteOffset: 1, as: UInt32.self)
                for j in 0..<k {
                    raw.storeBytes(of: indices[j].littleEndian, toByteOffset: 5 + 4 * j, as: UInt32.self)
                    raw.storeBytes(
                        of: values[j].bitPattern.littleEndian, toByteOffset: 5 + 4 * (k + j), as: UInt32.self)
                }
            }
        case .signs(let scale, let bits):
            bytes.append(Tag.signs.rawValue)
            put(scale)
            bytes.append(contentsOf: bits)
        case .levels(let s, let scale, let values):
            bytes.append(Tag.levels.rawValue)
            bytes.append(UInt8(s))
            put(scale)
            let width = Self.levelWidth(s)
            var packed = [UInt8](repeating: 0, count: (count * width + 7) / 8)
            for (i, level) in values.enumerated() {
                let code = UInt32(Int(level) + s)
                for b in 0..<width where code & (1 << UInt32(b)) != 0 {
                    let bit = i * width + b
                    packed[bit >> 3] |= 1 << UInt8(bit & 7)
                }
            }
            bytes.append(contentsOf: packed)
        }
        return bytes
    }

    /// Decodes a message of a d = `count` vector, checking everything a peer could get wrong: the
    /// length, the tag, index order and range, finiteness, level range.
    public init(decoding bytes: [UInt8], count: Int) throws(CompressorError) {
        self.count = count
        guard let first = bytes.first, let tag = Tag(rawValue: first) else {
            throw CompressorError(
                "compressed vector: unknown encoding tag \(bytes.first.map(String.init) ?? "(empty)")")
        }
        func word(_ offset: Int) -> UInt32 {
            UInt32(bytes[offset]) | UInt32(bytes[offset + 1]) << 8 | UInt32(bytes[offset + 2]) << 16
                | UInt32(bytes[offset + 3]) << 24
        }
        func finite(_ v: Float, _ what: @autoclosure () -> String) throws(CompressorError) -> Float {
            guard v.isFinite else { throw CompressorError("compressed vector: \(what()) is \(v)") }
            return v
        }
        switch tag {
        case .dense:
            guard bytes.count == 1 + 4 * count else {
                throw CompressorError("compressed vector: dense with \(bytes.count) bytes, expected \(1 + 4 * count)")
            }
            var values = [Float](repeating: 0, count: count)
            for i in 0..<count { values[i] = try finite(Float(bitPattern: word(1 + 4 * i)), "value \(i)") }
            content = .dense(values)
        case .sparse:
            guard bytes.count >= 5 else { throw CompressorError("compressed vector: sparse without its count") }
            let k = Int(word(1))
            guard k <= count, bytes.count == 5 + 8 * k else {
                throw CompressorError(
                    "compressed vector: sparse with k = \(k) of \(count) in \(bytes.count) bytes, expected \(5 + 8 * min(k, count))"
                )
            }
            var indices = [UInt32](repeating: 0, count: k)
            var values = [Float](repeating: 0, count: k)
            // The first index or value that is wrong, if any (checked in one pass, reported after).
            var bad: Int?
            bytes.withUnsafeBytes { raw in
                var previous: Int64 = -1
                for j in 0..<k {
                    let index = UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 5 + 4 * j, as: UInt32.self))
                    let value = Float(
                        bitPattern: UInt32(
                            littleEndian: raw.loadUnaligned(fromByteOffset: 5 + 4 * (k + j), as: UInt32.self)))
                    indices[j] = index
                    values[j] = value
                    if Int(index) >= count || Int64(index) <= previous || !value.isFinite {
                        bad = j
                        break
                    }
                    previous = Int64(index)
                }
            }
            if let j = bad {
                guard Int(indices[j]) < count, j == 0 || indices[j] > indices[j - 1] else {
                    throw CompressorError(
                        "compressed vector: index \(indices[j]) at position \(j) is out of range or out of order")
                }
                _ = try finite(values[j], "value at index \(indices[j])")
            }
            content = .sparse(indices: indices, values: values)
        case .signs:
            let expected = 5 + (count + 7) / 8
            guard bytes.count == expected else {
                throw CompressorError("compressed vector: signs in \(bytes.count) bytes, expected \(expected)")
            }
            content = .signs(scale: try finite(Float(bitPattern: word(1)), "the scale"), bits: Array(bytes[5...]))
        case .levels:
            guard bytes.count >= 6, (1...Compressor.maxLevels).contains(Int(bytes[1])) else {
                throw CompressorError("compressed vector: levels without a level count in 1…\(Compressor.maxLevels)")
            }
            let s = Int(bytes[1])
            let width = Self.levelWidth(s)
            let expected = 6 + (count * width + 7) / 8
            guard bytes.count == expected else {
                throw CompressorError("compressed vector: levels in \(bytes.count) bytes, expected \(expected)")
            }
            let scale = try finite(Float(bitPattern: word(2)), "the scale")
            var values = [Int8](repeating: 0, count: count)
            for i in 0..<count {
                var code = 0
                for b in 0..<width {
                    let bit = i * width + b
                    if bytes[6 + (bit >> 3)] & (1 << UInt8(bit & 7)) != 0 { code |= 1 << b }
                }
                guard code <= 2 * s else {
                    throw CompressorError("compressed vector: level \(code - s) at index \(i) is outside −\(s)…\(s)")
                }
                values[i] = Int8(code - s)
            }
            content = .levels(levels: s, scale: scale, values: values)
        }
    }

    /// The bytes of `encoded()` without building it.
    public var encodedByteCount: Int {
        switch content {
        case .dense: 1 + 4 * count
        case .sparse(let indices, _): 5 + 8 * indices.count
        case .signs: 5 + (count + 7) / 8
        case .levels(let s, _, _): 6 + (count * Self.levelWidth(s) + 7) / 8
        }
    }

    /// x ← x + Q (the value Q stands for, added coordinate by coordinate).
    public func add(to x: inout [Float]) {
        precondition(x.count == count)
        switch content {
        case .dense(let values):
            x.addScaled(values, by: 1)
        case .sparse(let indices, let values):
            for (i, v) in zip(indices, values) { x[Int(i)] += v }
        case .signs(let scale, let bits):
            for i in 0..<count { x[i] += bits[i >> 3] & (1 << UInt8(i & 7)) != 0 ? -scale : scale }
        case .levels(_, let scale, let values):
            for i in 0..<count { x[i] += scale * Float(values[i]) }
        }
    }

    /// Q as a dense vector.
    public func decoded() -> [Float] {
        if case .dense(let values) = content { return values }
        var x = [Float](repeating: 0, count: count)
        add(to: &x)
        return x
    }
}
