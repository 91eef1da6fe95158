import LearningCore

/// A labelled classification set kept as raw bytes: `featureCount` unsigned bytes per example
/// (pixels 0…255) and one label byte. Converted to Float only when a batch is drawn, so a
/// worker's shard of Fashion-MNIST costs 785 bytes per example.
public struct Dataset: Sendable {
    public var features: [UInt8]
    public var labels: [UInt8]
    public let featureCount: Int
    public let classCount: Int

    public init(features: [UInt8], labels: [UInt8], featureCount: Int, classCount: Int) {
        precondition(features.count == labels.count * featureCount, "features and labels disagree")
        self.features = features
        self.labels = labels
        self.featureCount = featureCount
        self.classCount = classCount
    }

    public var count: Int { labels.count }

    /// The same examples, their features copied into memory advised for transparent huge pages:
    /// a training shard's rows are read in random order, and with 4 KiB pages nearly every row
    /// of a batch is a TLB miss.
    public func featuresOnHugePages() -> Dataset {
        let source = features
        let moved = [UInt8](unsafeUninitializedCapacity: source.count) { buffer, initialized in
            HugePageBuffer.advise(UnsafeMutableRawBufferPointer(buffer))
            _ = buffer.initialize(from: source)
            initialized = source.count
        }
        return Dataset(features: moved, labels: labels, featureCount: featureCount, classCount: classCount)
    }

    /// The examples at `indices`, in that order.
    public func subset(_ indices: [Int]) -> Dataset {
        var features = [UInt8]()
        features.reserveCapacity(indices.count * featureCount)
        for index in indices {
            features.append(contentsOf: self.features[(index * featureCount)..<((index + 1) * featureCount)])
        }
        return Dataset(
            features: features, labels: indices.map { labels[$0] }, featureCount: featureCount, classCount: classCount)
    }

    /// Writes rows `range` as floats x/255 into `destination` and labels into `labels`.
    public func copyRows(
        _ rows: some Collection<Int>, into destination: UnsafeMutablePointer<Float>, labels: UnsafeMutablePointer<Int32>
    ) {
        // A shuffled batch's rows lie anywhere in the set: each is fetched into cache two rows
        // ahead of its conversion (waiting for them was most of this loop's time, `perf`).
        let lookahead = 2
        features.withUnsafeBufferPointer { bytes in
            var ahead = rows.startIndex
            func fetchAhead() {
                guard ahead != rows.endIndex else { return }
                VectorKernels.prefetch(bytes.baseAddress! + rows[ahead] * featureCount, count: featureCount)
                rows.formIndex(after: &ahead)
            }
            for _ in 0..<lookahead { fetchAhead() }
            var row = 0
            for index in rows {
                fetchAhead()
                let source = bytes.baseAddress! + index * featureCount
                let target = destination + row * featureCount
                for j in 0..<featureCount { target[j] = Float(source[j]) * (1 / 255) }
                labels[row] = Int32(self.labels[index])
                row += 1
            }
        }
    }
}

/// What a run trained and evaluated on, recorded in every report.
public struct DataDescription: Sendable, Equatable, Codable {
    public var name: String
    public var source: String
    public var trainCount: Int
    public var testCount: Int
    public var featureCount: Int
    public var classCount: Int

    public init(name: String, source: String, trainCount: Int, testCount: Int, featureCount: Int, classCount: Int) {
        self.name = name
        self.source = source
        self.trainCount = trainCount
        self.testCount = testCount
        self.featureCount = featureCount
        self.classCount = classCount
    }
}
