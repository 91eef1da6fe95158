import Datasets
import Foundation
import LearningCore

/// Reads data sets from disk (the I/O edge of the data pipeline; the parsing is in `Datasets`).
public enum DataLoader {
    /// Where Debian's `dataset-fashion-mnist` installs its files.
    public static let fashionMNISTDirectory = "/usr/share/datasets/fashion-mnist"
    static let trainImages = "train-images-idx3-ubyte"
    static let trainLabels = "train-labels-idx1-ubyte"
    static let testImages = "t10k-images-idx3-ubyte"
    static let testLabels = "t10k-labels-idx1-ubyte"

    /// Parses `--data`: `auto` (Fashion-MNIST if installed, else synthetic), `synthetic`,
    /// `synthetic:SEED`, or a directory of IDX files.
    public static func resolve(_ argument: String) throws -> DataSource {
        switch argument {
        case "auto":
            let present = (try? locate(trainImages, in: fashionMNISTDirectory)) != nil
            return present ? .idx(directory: fashionMNISTDirectory) : synthetic(seed: 1)
        case "synthetic":
            return synthetic(seed: 1)
        default:
            if argument.hasPrefix("synthetic:") {
                guard let seed = UInt64(argument.dropFirst("synthetic:".count)) else {
                    throw DataError(
                        file: "--data",
                        reason: "'\(argument)': expected synthetic:SEED with a non-negative integer seed")
                }
                return synthetic(seed: seed)
            }
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: argument, isDirectory: &isDirectory), isDirectory.boolValue
            else {
                throw DataError(
                    file: argument, reason: "--data: not a directory (use a folder of IDX files, 'synthetic' or 'auto')"
                )
            }
            _ = try locate(trainImages, in: argument)
            return .idx(directory: argument)
        }
    }

    static func synthetic(seed: UInt64) -> DataSource {
        let defaults = SyntheticClassification(seed: seed)
        return .synthetic(
            seed: seed, trainCount: defaults.trainCount, testCount: defaults.testCount,
            featureCount: defaults.featureCount)
    }

    static func generator(_ source: DataSource) -> SyntheticClassification? {
        guard case .synthetic(let seed, let trainCount, let testCount, let featureCount) = source else { return nil }
        return SyntheticClassification(
            seed: seed, featureCount: featureCount, trainCount: trainCount, testCount: testCount)
    }

    /// Path of `name.gz` or `name` in `directory`.
    static func locate(_ name: String, in directory: String) throws -> String {
        for candidate in ["\(name).gz", name] {
            let path = (directory as NSString).appendingPathComponent(candidate)
            if FileManager.default.isReadableFile(atPath: path) { return path }
        }
        throw DataError(file: directory, reason: "missing \(name).gz or \(name)")
    }

    /// Reads a whole file, decompressing gzip if it starts with the gzip magic.
    static func readWhole(_ path: String) throws -> [UInt8] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw DataError(file: path, reason: "cannot read file")
        }
        let bytes = [UInt8](data)
        return GzipInflater.isGzip(bytes) ? try GzipInflater.decompress(bytes, name: path) : bytes
    }

    /// Streams an IDX item file, keeping only the items at sorted `indices`.
    /// A gzipped file goes through the host's `IDXCache` when it can be used: inflated once per
    /// host, then read raw. `cache`: the cache directory, `.some(nil)` for none, nil for the default.
    static func readItems(_ path: String, indices: [Int], cache: String?? = nil) throws -> (IDXHeader, [UInt8]) {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw DataError(file: path, reason: "cannot open file")
        }
        defer { try? handle.close() }
        var selector = IDXRowSelector(name: path, selection: indices)
        let magic = try handle.read(upToCount: 2) ?? Data()
        if GzipInflater.isGzip(magic), let cache = cache ?? IDXCache.directory(),
            let entry = IDXCache.decompressedCopy(of: path, in: cache)
        {
            try IDXCache.forEachPayloadPiece(of: entry) { try selector.consume($0) }
            try selector.finish()
            return (selector.header!, selector.selected)
        }
        try handle.seek(toOffset: 0)
        var inflater: GzipInflater?
        var first = true
        while true {
            let chunk = try handle.read(upToCount: 1 << 20) ?? Data()
            if chunk.isEmpty { break }
            if first {
                first = false
                if GzipInflater.isGzip(chunk) { inflater = try GzipInflater(name: path) }
            }
            try chunk.withUnsafeBytes { raw in
                if let inflater {
                    try inflater.feed(raw) { piece in try selector.consume(piece) }
                } else {
                    try selector.consume(raw.bindMemory(to: UInt8.self))
                }
            }
        }
        if let inflater, !inflater.isFinished { throw DataError(file: path, reason: "truncated gzip stream") }
        try selector.finish()
        return (selector.header!, selector.selected)
    }

    /// Labels of the training split.
    public static func trainLabels(_ source: DataSource) throws -> (labels: [UInt8], classCount: Int) {
        if let generator = generator(source) { return (generator.trainLabels, generator.classCount) }
        guard case .idx(let directory) = source else { fatalError() }
        let path = try locate(trainLabels, in: directory)
        let labels = try IDXHeader.decodeLabels(try readWhole(path), name: path)
        return (labels, 10)
    }

    /// One worker's shard of the training split: the partition is computed from all labels
    /// (identically in every worker), then only the worker's rows are kept.
    /// With `trainExamples`, the run trains on that fixed seeded subset of the training split only
    /// (the rows `loadTrainSubset(count: trainExamples, seed:)` gives, so x̄'s curvature can be
    /// measured on exactly the examples it is trained on), partitioned among the workers.
    public static func loadShard(
        _ source: DataSource, partition: PartitionScheme, workers: Int, seed: UInt64, rank: Int,
        trainExamples: Int? = nil, validationFraction: Double = 0
    ) throws -> Dataset {
        let (shards, labels, classCount) = try shardIndices(
            source, partition: partition, workers: workers, seed: seed, trainExamples: trainExamples)
        let rows = try validationSplit(of: shards[rank], fraction: validationFraction, seed: seed, rank: rank).training
        return try loadTrainExamples(source, indices: rows, labels: labels, classCount: classCount)
    }

    /// Worker `rank`'s training rows cut in two: ⌈fraction·n⌉ of its n rows, a seeded choice, set
    /// aside for validation (`RunConfiguration.clientValidationFraction`), the rest to train on,
    /// both in the shard's order. The choice depends on the seed and the rank only, so the
    /// training side is the same in every process that asks.
    static func validationSplit(of shard: [Int], fraction: Double, seed: UInt64, rank: Int) throws -> (
        training: [Int], validation: [Int]
    ) {
        guard fraction > 0 else { return (shard, []) }
        let size = Int((fraction * Double(shard.count)).rounded(.up))
        guard size < shard.count else {
            throw DataError(
                file: "training set",
                reason:
                    "worker \(rank)'s shard has \(shard.count) examples; --client-validation-fraction \(fraction) would leave none to train on"
            )
        }
        var positions = Array(shard.indices)
        var generator = SplitMix64(seed: seed, stream: 0x7A11_D000 &+ UInt64(rank))
        generator.shuffle(&positions)
        let chosen = Set(positions.prefix(size))
        return (
            shard.indices.filter { !chosen.contains($0) }.map { shard[$0] },
            shard.indices.filter { chosen.contains($0) }.map { shard[$0] }
        )
    }

    /// Worker `rank`'s validation split: the training rows `validationSplit` set aside.
    public static func loadClientValidationSplit(_ configuration: RunConfiguration, rank: Int) throws -> Dataset {
        let (shards, labels, classCount) = try shardIndices(
            configuration.data, partition: configuration.partition, workers: configuration.workers,
            seed: configuration.seed, trainExamples: configuration.trainExamples)
        let rows = try validationSplit(
            of: shards[rank], fraction: configuration.clientValidationFraction, seed: configuration.seed, rank: rank
        ).validation
        return try loadTrainExamples(configuration.data, indices: rows, labels: labels, classCount: classCount)
    }

    /// Every worker's training rows (indices into the training split), with the split's labels.
    static func shardIndices(
        _ source: DataSource, partition: PartitionScheme, workers: Int, seed: UInt64, trainExamples: Int?
    ) throws -> (shards: [[Int]], labels: [UInt8], classCount: Int) {
        let (labels, classCount) = try trainLabels(source)
        guard let trainExamples else {
            return (
                try partition.assign(labels: labels, classCount: classCount, workers: workers, seed: seed), labels,
                classCount
            )
        }
        guard trainExamples <= labels.count else {
            throw DataError(
                file: "training set",
                reason: "has \(labels.count) examples; --train-examples \(trainExamples) asks for more")
        }
        let subset = subsetIndices(count: trainExamples, of: labels.count, seed: seed)
        let positions = try partition.assign(
            labels: subset.map { labels[$0] }, classCount: classCount, workers: workers, seed: seed)
        return (positions.map { $0.map { subset[$0] } }, labels, classCount)
    }

    /// The sorted indices of a fixed seeded subset of `count` of `total` training examples.
    static func subsetIndices(count: Int, of total: Int, seed: UInt64) -> [Int] {
        var order = Array(0..<total)
        var generator = SplitMix64(seed: seed, stream: 0x5AB5)
        generator.shuffle(&order)
        return Array(order.prefix(count)).sorted()
    }

    static func loadTrainExamples(_ source: DataSource, indices: [Int], labels: [UInt8], classCount: Int) throws
        -> Dataset
    {
        if let generator = generator(source) { return generator.examples(indices) }
        guard case .idx(let directory) = source else { fatalError() }
        let path = try locate(trainImages, in: directory)
        let (header, features) = try readItems(path, indices: indices)
        guard header.itemCount == labels.count else {
            throw DataError(
                file: path, reason: "holds \(header.itemCount) images but \(trainLabels) holds \(labels.count) labels")
        }
        return Dataset(
            features: features, labels: indices.map { labels[$0] }, featureCount: header.itemLength,
            classCount: classCount)
    }

    /// Worker `rank`'s own test split: `configuration.clientTestSize` test examples drawn from the
    /// label distribution of its training shard (see `PartitionScheme.clientTestSplit`).
    /// Without `testSet`, only the split's own rows are read (a worker does not hold the whole
    /// test set to keep a few hundred of its images).
    public static func loadClientTestSplit(_ configuration: RunConfiguration, rank: Int, testSet: Dataset? = nil)
        throws -> Dataset
    {
        let (shards, labels, classCount) = try shardIndices(
            configuration.data, partition: configuration.partition, workers: configuration.workers,
            seed: configuration.seed, trainExamples: configuration.trainExamples)
        let testLabels = try testSet?.labels ?? loadTestLabels(configuration.data)
        let split = PartitionScheme.clientTestSplit(
            testLabels: testLabels, trainLabels: shards[rank].map { labels[$0] },
            size: configuration.clientTestSize,
            classCount: max(classCount, testSet?.classCount ?? 10), seed: configuration.seed, worker: rank)
        if let testSet { return testSet.subset(split) }
        return try loadTestRows(configuration.data, indices: split)
    }

    /// Labels of the test split.
    static func loadTestLabels(_ source: DataSource) throws -> [UInt8] {
        if let generator = generator(source) { return generator.testSet.labels }
        guard case .idx(let directory) = source else { fatalError() }
        let labelPath = try locate(testLabels, in: directory)
        return try IDXHeader.decodeLabels(try readWhole(labelPath), name: labelPath)
    }

    /// A fixed, seeded subset of `count` training examples (the sharpness and train-loss set of x̄).
    public static func loadTrainSubset(_ source: DataSource, count: Int, seed: UInt64) throws -> Dataset {
        let (labels, classCount) = try trainLabels(source)
        return try loadTrainExamples(
            source, indices: subsetIndices(count: count, of: labels.count, seed: seed), labels: labels,
            classCount: classCount)
    }

    /// Training examples by index, in the order given (e.g. the first 1,000 for a benchmark).
    public static func loadTrainRows(_ source: DataSource, indices: [Int]) throws -> Dataset {
        let (labels, classCount) = try trainLabels(source)
        if let bad = indices.first(where: { !labels.indices.contains($0) }) {
            throw DataError(file: "training set", reason: "has \(labels.count) examples; index \(bad) asked for")
        }
        return try loadTrainExamples(source, indices: indices, labels: labels, classCount: classCount)
    }

    /// The whole test split.
    public static func loadTestSet(_ source: DataSource) throws -> Dataset {
        try loadTestRows(source, indices: nil)
    }

    /// Test examples at sorted `indices` (all of them when nil).
    static func loadTestRows(_ source: DataSource, indices: [Int]?) throws -> Dataset {
        if let generator = generator(source) {
            return indices.map { generator.testSet.subset($0) } ?? generator.testSet
        }
        guard case .idx(let directory) = source else { fatalError() }
        let labelPath = try locate(testLabels, in: directory)
        let labels = try IDXHeader.decodeLabels(try readWhole(labelPath), name: labelPath)
        let imagePath = try locate(testImages, in: directory)
        let (header, features) = try readItems(imagePath, indices: indices ?? Array(labels.indices))
        guard header.itemCount == labels.count else {
            throw DataError(
                file: imagePath,
                reason: "holds \(header.itemCount) images but \(labelPath) holds \(labels.count) labels")
        }
        return Dataset(
            features: features, labels: indices.map { $0.map { labels[$0] } } ?? labels,
            featureCount: header.itemLength, classCount: 10)
    }

    /// A description for reports.
    public static func describe(_ source: DataSource, trainCount: Int, test: Dataset) -> DataDescription {
        if let generator = generator(source) { return generator.description }
        guard case .idx(let directory) = source else { fatalError() }
        let name = directory.lowercased().contains("fashion") ? "fashion-mnist" : "idx"
        return DataDescription(
            name: name, source: directory, trainCount: trainCount, testCount: test.count,
            featureCount: test.featureCount,
            classCount: test.classCount)
    }
}

/// Resource figures of this process.
public enum ProcessResources {
    /// Peak resident set size (VmHWM) in bytes, from /proc/self/status; 0 where unavailable.
    public static func peakResidentBytes() -> Int { procField("VmHWM:") }

    /// Resident pages of shared memory this process has mapped (RssShmem): other processes'
    /// segments it reads and its own, counted in the peak too. Pages are touched in the first
    /// rounds and stay mapped, so peak − this is the peak of the process's own memory.
    public static func sharedResidentBytes() -> Int { procField("RssShmem:") }

    /// This process's proportional share of those pages (Pss_Shmem in /proc/self/smaps_rollup: a
    /// page that k processes map counts 1/k), in bytes; 0 where unavailable.
    public static func sharedProportionalBytes() -> Int {
        procField("Pss_Shmem:", file: "/proc/self/smaps_rollup")
    }

    private static func procField(_ name: String, file: String = "/proc/self/status") -> Int {
        guard let status = try? String(contentsOfFile: file, encoding: .utf8) else { return 0 }
        for line in status.split(separator: "\n") where line.hasPrefix(name) {
            let digits = line.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0
            return digits * 1024
        }
        return 0
    }
}
