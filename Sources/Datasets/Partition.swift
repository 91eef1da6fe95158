import LearningCore

/// How training examples are split across workers.
public enum PartitionScheme: Sendable, Equatable, Codable, CustomStringConvertible {
    /// A seeded shuffle cut into equal contiguous pieces (sizes differ by at most one).
    case iid
    /// Label skew: for each class, worker shares ~ Dirichlet(α·1) (Hsu, Qi and Brown, 2019, "Measuring
    /// the effects of non-identical data distribution"). Smaller α, more skew.
    case dirichlet(alpha: Double)

    /// Parses `iid` or `dirichlet:α`.
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
        throw PartitionError(reason: "partition '\(text)' is not 'iid' or 'dirichlet:α' with α > 0")
    }

    public var description: String {
        switch self {
        case .iid: "iid"
        case .dirichlet(let alpha): "dirichlet:\(alpha)"
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
