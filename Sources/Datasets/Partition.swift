import LearningCore

/// How training examples are split across workers.
public enum PartitionScheme: Sendable, Equatable, Codable, CustomStringConvertible {
    /// A seeded shuffle cut into equal contiguous pieces (sizes differ by at most one).
    case iid
    /// Label skew: for each class, worker shares ~ Dirichlet(α·1) (Hsu, Qi and Brown, 2019, "Measuring
    /// the effects of non-identical data distribution"). Smaller α, more skew.
    case dirichlet(alpha: Double)
    /// Pathological non-IID (McMahan et al., AISTATS 2017): the examples sorted by label, cut into
    /// workers·k shards, k random shards per worker, so each worker sees about k classes.
    case pathological(classesPerWorker: Int)
    /// Unbalanced sizes: IID content, worker sizes proportional to LogNormal(0, σ²) draws (as in
    /// LEAF and FedProx's synthetic sets); every worker keeps at least one example.
    case logNormal(sigma: Double)

    /// Parses `iid`, `dirichlet:α`, `pathological:K` or `lognormal:σ`.
    public init(parsing text: String) throws(PartitionError) {
        if text == "iid" {
            self = .iid
            return
        }
        if text.hasPrefix("dirichlet:"), let alpha = Double(text.dropFirst("dirichlet:".count)), alpha > 0,
            alpha.isFinite
        {
            self = .dirichlet(alpha: alpha)
            return
        }
        if text.hasPrefix("pathological:"), let k = Int(text.dropFirst("pathological:".count)), k >= 1 {
            self = .pathological(classesPerWorker: k)
            return
        }
        if text.hasPrefix("lognormal:"), let sigma = Double(text.dropFirst("lognormal:".count)), sigma >= 0,
            sigma.isFinite
        {
            self = .logNormal(sigma: sigma)
            return
        }
        throw PartitionError(
            reason:
                "partition '\(text)' is not 'iid', 'dirichlet:α' (α > 0), 'pathological:K' (K ≥ 1) or 'lognormal:σ' (σ ≥ 0)"
        )
    }

    public var description: String {
        switch self {
        case .iid: "iid"
        case .dirichlet(let alpha): "dirichlet:\(alpha)"
        case .pathological(let k): "pathological:\(k)"
        case .logNormal(let sigma): "lognormal:\(sigma)"
        }
    }

    /// The sorted example indices of every worker. Every index in 0..<labels.count appears exactly once.
    public func assign(labels: [UInt8], classCount: Int, workers: Int, seed: UInt64) throws(PartitionError) -> [[Int]] {
        precondition(workers > 0)
        guard labels.count >= workers else {
            throw PartitionError(reason: "\(labels.count) training examples cannot be split across \(workers) workers")
        }
        var generator = SplitMix64(seed: seed, stream: 0xDA7A)
        switch self {
        case .iid:
            var order = Array(labels.indices)
            generator.shuffle(&order)
            return (0..<workers).map { worker in
                let start = worker * order.count / workers
                let end = (worker + 1) * order.count / workers
                return order[start..<end].sorted()
            }
        case .pathological(let k):
            guard labels.count >= workers * k else {
                throw PartitionError(
                    reason: "pathological:\(k) needs at least \(workers * k) examples for \(workers) workers")
            }
            // Sort by label (ties by a seeded shuffle), cut into workers·k shards, deal them out.
            var order = Array(labels.indices)
            generator.shuffle(&order)
            order.sort { labels[$0] < labels[$1] }
            let shardCount = workers * k
            var shards = Array(0..<shardCount)
            generator.shuffle(&shards)
            return (0..<workers).map { worker in
                shards[(worker * k)..<((worker + 1) * k)].flatMap { shard in
                    order[(shard * order.count / shardCount)..<((shard + 1) * order.count / shardCount)]
                }.sorted()
            }
        case .logNormal(let sigma):
            var order = Array(labels.indices)
            generator.shuffle(&order)
            let weights = (0..<workers).map { _ in _exp(sigma * generator.nextStandardNormal()) }
            let total = weights.reduce(0, +)
            let spare = order.count - workers
            var cuts = [0]
            var cumulative = 0.0
            for worker in 0..<workers {
                cumulative += weights[worker] / total
                let extra = worker == workers - 1 ? spare : Int((cumulative * Double(spare)).rounded())
                cuts.append(extra + worker + 1)
            }
            return (0..<workers).map { order[cuts[$0]..<max(cuts[$0 + 1], cuts[$0])].sorted() }
        case .dirichlet(let alpha):
            var byClass = [[Int]](repeating: [], count: classCount)
            for (index, label) in labels.enumerated() { byClass[Int(label)].append(index) }
            // Redraw until no worker is empty (as the FedLab/NIID-Bench partitioners do), bounded.
            for _ in 0..<1000 {
                var shards = [[Int]](repeating: [], count: workers)
                for var members in byClass where !members.isEmpty {
                    generator.shuffle(&members)
                    let draws = (0..<workers).map { _ in generator.nextGamma(shape: alpha) }
                    let total = draws.reduce(0, +)
                    var cumulative = 0.0
                    var start = 0
                    for worker in 0..<workers {
                        cumulative += draws[worker] / total
                        let end =
                            worker == workers - 1
                            ? members.count : min(members.count, Int((cumulative * Double(members.count)).rounded()))
                        if end > start { shards[worker].append(contentsOf: members[start..<end]) }
                        start = max(start, end)
                    }
                }
                if shards.allSatisfy({ !$0.isEmpty }) { return shards.map { $0.sorted() } }
            }
            throw PartitionError(
                reason: "dirichlet:\(alpha) left a worker with no data in 1000 draws; raise α or use fewer workers")
        }
    }
}

public struct PartitionError: Error, CustomStringConvertible {
    public var reason: String
    public var description: String { reason }
}

#if canImport(Glibc)
    import Glibc
#endif
private func _exp(_ x: Double) -> Double { exp(x) }

extension PartitionScheme {
    /// A worker's own test split: `size` examples of the test set drawn (without replacement) with
    /// the label proportions of the worker's training shard, so each client is evaluated on its own
    /// distribution; disjoint from all training data by construction (it comes from the test set).
    public static func clientTestSplit(
        testLabels: [UInt8], trainLabels: [UInt8], size: Int, classCount: Int, seed: UInt64, worker: Int
    ) -> [Int] {
        var generator = SplitMix64(seed: seed, stream: 0x7E57, substream: UInt64(worker))
        var byClass = [[Int]](repeating: [], count: classCount)
        for (index, label) in testLabels.enumerated() { byClass[Int(label)].append(index) }
        for c in byClass.indices { generator.shuffle(&byClass[c]) }
        var counts = [Int](repeating: 0, count: classCount)
        for label in trainLabels { counts[Int(label)] += 1 }
        let total = max(trainLabels.count, 1)
        var chosen: [Int] = []
        for c in 0..<classCount {
            let want = min(byClass[c].count, Int((Double(counts[c]) / Double(total) * Double(size)).rounded()))
            chosen += byClass[c].prefix(want)
        }
        return chosen.sorted()
    }
}
