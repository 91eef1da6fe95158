import LearningCore

/// A small, seeded image-classification set written as IDX bytes (8×8 "images", 10 classes),
/// for tests that exercise the real file path end to end in a second.
public enum TinyIDX {
    public static func images(count: Int, seed: UInt64, side: Int = 8) -> [UInt8] {
        var bytes: [UInt8] = [0, 0, 0x08, 3]
        for dimension in [count, side, side] { bytes += bigEndian(UInt32(dimension)) }
        let labels = labelValues(count: count, seed: seed)
        var generator = SplitMix64(seed: seed, stream: 77)
        for item in 0..<count {
            let label = Int(labels[item])
            for pixel in 0..<(side * side) {
                let pattern = (pixel * 7 + label * 13) % 10 < 5 ? 180.0 : 60.0
                let noisy = pattern + 50 * generator.nextStandardNormal()
                bytes.append(UInt8(max(0, min(255, noisy.rounded()))))
            }
        }
        return bytes
    }

    public static func labels(count: Int, seed: UInt64) -> [UInt8] {
        var bytes: [UInt8] = [0, 0, 0x08, 1]
        bytes += bigEndian(UInt32(count))
        return bytes + labelValues(count: count, seed: seed)
    }

    static func labelValues(count: Int, seed: UInt64) -> [UInt8] {
        var generator = SplitMix64(seed: seed, stream: 78)
        return (0..<count).map { _ in UInt8(generator.next() % 10) }
    }

    static func bigEndian(_ value: UInt32) -> [UInt8] {
        [UInt8(value >> 24), UInt8((value >> 16) & 0xFF), UInt8((value >> 8) & 0xFF), UInt8(value & 0xFF)]
    }
}
