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
    public func examples(_ indices: [Int], test: Bool = false) -> Dataset {
        var features = [UInt8](repeating: 0, count: indices.count * featureCount)
        var labels = [UInt8](repeating: 0, count: indices.count)
        var latent = [Double](repeating: 0, count: latentDimension)
        for (row, trainIndex) in indices.enumerated() {
            let index = test ? trainCount + trainIndex : trainIndex
            let label = label(of: index)
            labels[row] = label
            var generator = SplitMix64(seed: seed, stream: 0x5_a3b2, substream: UInt64(index))
            for d in 0..<latentDimension {
                latent[d] = classMeans[Int(label)][d] + latentNoise * generator.nextStandardNormal()
            }
            for j in 0..<featureCount {
                var value = 0.0
                for d in 0..<latentDimension { value += projection[j * latentDimension + d] * latent[d] }
                value += 0.3 * generator.nextStandardNormal()
                let pixel = 127.5 + 40 * value
                features[row * featureCount + j] = UInt8(max(0, min(255, pixel.rounded())))
            }
        }
        return Dataset(features: features, labels: labels, featureCount: featureCount, classCount: classCount)
    }

    public var testSet: Dataset { examples(Array(0..<testCount), test: true) }
}
