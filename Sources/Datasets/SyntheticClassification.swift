import LearningCore

/// The built-in synthetic classification set: a seeded Gaussian mixture in a low-dimensional
/// latent space, mapped to `featureCount` byte "pixels" by a fixed random linear map plus pixel
/// noise. Classes overlap in the latent space, so accuracy well below 100% is expected.
///
/// Each example is generated from its own generator stream (seed, index), so a worker can produce
/// just its shard, and every process agrees on every example.
public struct SyntheticClassification: Sendable {
    public let seed: UInt64
    public let featureCount: Int
    public let classCount: Int
    public let trainCount: Int
    public let testCount: Int
    public let latentDimension: Int
    /// Standard deviation of the latent noise around each class mean (the means are N(0, I)).
    public let latentNoise: Double
    /// Width of the uniform pixel noise in projected units.
    public let pixelNoise: Float = 1
    private let classMeans: [[Double]]
    private let projection: [Double]  // featureCount × latentDimension

    public init(
        seed: UInt64 = 1, featureCount: Int = 784, classCount: Int = 10, trainCount: Int = 12_000,
        testCount: Int = 2_000, latentDimension: Int = 16, latentNoise: Double = 0.9
    ) {
        self.seed = seed
        self.featureCount = featureCount
        self.classCount = classCount
        self.trainCount = trainCount
        self.testCount = testCount
        self.latentDimension = latentDimension
        self.latentNoise = latentNoise
        var generator = SplitMix64(seed: seed, stream: 0x5_7e71)
        classMeans = (0..<classCount).map { _ in (0..<latentDimension).map { _ in generator.nextStandardNormal() } }
        projection = (0..<(featureCount * latentDimension)).map { _ in
            generator.nextStandardNormal() / Double(latentDimension).squareRoot()
        }
    }

    public var description: DataDescription {
        DataDescription(
            name: "synthetic", source: "built-in Gaussian mixture, data seed \(seed)", trainCount: trainCount,
            testCount: testCount, featureCount: featureCount, classCount: classCount)
    }

    /// The label of example `index` (train indices are 0..<trainCount, test indices follow).
    public func label(of index: Int) -> UInt8 {
        var generator = SplitMix64(seed: seed, stream: 0x5_a3b1, substream: UInt64(index))
        return UInt8(generator.next() % UInt64(classCount))
    }

    public var trainLabels: [UInt8] { (0..<trainCount).map(label(of:)) }

    /// The examples `indices` of the training split (or of the test split with `test: true`).
    /// Latent points are drawn per example, projected to pixel space with one SGEMM, and pixel
    /// noise (uniform, ±0.5·pixelNoise) is added from the example's own stream.
    public func examples(_ indices: [Int], test: Bool = false) -> Dataset {
        let rows = indices.count
        var labels = [UInt8](repeating: 0, count: rows)
        var latent = [Float](repeating: 0, count: max(rows * latentDimension, 1))
        var generators: [SplitMix64] = []
        generators.reserveCapacity(rows)
        for (row, trainIndex) in indices.enumerated() {
            let index = test ? trainCount + trainIndex : trainIndex
            let label = label(of: index)
            labels[row] = label
            var generator = SplitMix64(seed: seed, stream: 0x5_a3b2, substream: UInt64(index))
            for d in 0..<latentDimension {
                latent[row * latentDimension + d] = Float(
                    classMeans[Int(label)][d] + latentNoise * generator.nextStandardNormal())
            }
            generators.append(generator)
        }
        var projected = [Float](repeating: 0, count: max(rows * featureCount, 1))
        if rows > 0 {
            let projection = self.projection.map(Float.init)
            latent.withUnsafeBufferPointer { l in
                projection.withUnsafeBufferPointer { p in
                    projected.withUnsafeMutableBufferPointer { y in
                        BLAS.gemm(
                            transposeA: false, transposeB: true, m: rows, n: featureCount, k: latentDimension, alpha: 1,
                            a: l.baseAddress!, lda: latentDimension, b: p.baseAddress!, ldb: latentDimension, beta: 0,
                            c: y.baseAddress!, ldc: featureCount)
                    }
                }
            }
        }
        var features = [UInt8](repeating: 0, count: rows * featureCount)
        features.withUnsafeMutableBufferPointer { out in
            projected.withUnsafeBufferPointer { values in
                for row in 0..<rows {
                    var generator = generators[row]
                    var bits: UInt64 = 0
                    for j in 0..<featureCount {
                        if j % 4 == 0 { bits = generator.next() }
                        let uniform = Float(bits & 0xFFFF) * (1 / 65536) - 0.5
                        bits >>= 16
                        let value = values[row * featureCount + j] + pixelNoise * uniform
                        out[row * featureCount + j] = UInt8(max(0, min(255, (127.5 + 40 * value).rounded())))
                    }
                }
            }
        }
        return Dataset(features: features, labels: labels, featureCount: featureCount, classCount: classCount)
    }

    public var testSet: Dataset { examples(Array(0..<testCount), test: true) }
}
