import LearningCore

/// The topology of every round: fixed, periodic (a schedule file), or a seeded random process.
/// `topology(atRound:)` is a pure function of the round (and the seed), so every worker derives
/// the same graph for the same round without any coordination.
public enum TopologySchedule: Sendable, Equatable, Codable {
    case fixed(Topology)
    /// Round t uses phase t mod T (a schedule file).
    case periodic(name: String, phases: [Topology])
    /// Round t: every node sends to the one peer at distance 2^(t mod ⌈log₂ n⌉) and keeps half
    /// its model (Ying et al., "Exponential graph is provably efficient for decentralized deep
    /// training", NeurIPS 2021). The product over one period is exact averaging when n is a power of 2.
    case onePeerExponential(nodeCount: Int)
    /// A fresh uniformly random perfect matching each round (one node idles when n is odd);
    /// matched pairs average (weights 1/2).
    case randomMatching(nodeCount: Int, seed: UInt64)
    /// The base topology with its nodes randomly permuted each round (the "random shuffle" setting
    /// of Zhu et al., ICML 2023).
    case randomPermutation(base: Topology, seed: UInt64)
    /// A fresh random d-regular graph each round, Metropolis–Hastings weights.
    case randomRegular(nodeCount: Int, degree: Int, seed: UInt64)
    /// Another schedule with some nodes removed from every round (after failures).
    indirect case withoutNodes(TopologySchedule, removed: [Int])
    /// Another schedule with links absent in some rounds (fault injection).
    indirect case withDroppedLinks(TopologySchedule, links: [DroppedLink])

    public var nodeCount: Int {
        switch self {
        case .fixed(let topology): topology.nodeCount
        case .periodic(_, let phases): phases[0].nodeCount
        case .onePeerExponential(let n), .randomMatching(let n, _), .randomRegular(let n, _, _): n
        case .randomPermutation(let base, _): base.nodeCount
        case .withoutNodes(let base, _), .withDroppedLinks(let base, _): base.nodeCount
        }
    }

    public var name: String {
        switch self {
        case .fixed(let topology): topology.name
        case .periodic(let name, _): name
        case .onePeerExponential: "one-peer-exponential"
        case .randomMatching: "random-matching"
        case .randomPermutation(let base, _): "random-permutation:\(base.name)"
        case .randomRegular(_, let degree, _): "random-regular-each-round:\(degree)"
        case .withoutNodes(let base, let removed): "\(base.name) without \(removed)"
        case .withDroppedLinks(let base, _): base.name
        }
    }

    /// Rounds after which the sequence repeats; nil for random schedules.
    public var period: Int? {
        switch self {
        case .fixed: 1
        case .periodic(_, let phases): phases.count
        case .onePeerExponential(let n): Self.exponentialPeriod(n)
        case .randomMatching, .randomPermutation, .randomRegular: nil
        case .withoutNodes(let base, _): base.period
        case .withDroppedLinks: nil
        }
    }

    public var isStatic: Bool { if case .fixed = self { true } else { false } }

    /// Whether the workers must run push-sum (some round's W is column- but not row-stochastic).
    public var requiresPushSum: Bool {
        switch self {
        case .fixed(let topology): topology.requiresPushSum
        case .periodic(_, let phases): phases.contains { $0.requiresPushSum }
        case .randomPermutation(let base, _): base.requiresPushSum
        case .onePeerExponential, .randomMatching, .randomRegular: false
        case .withoutNodes(let base, _), .withDroppedLinks(let base, _): base.requiresPushSum
        }
    }

    /// The phase of round t (0-based) for periodic schedules.
    public func phase(atRound t: Int) -> Int? { period.map { t % $0 } }

    static func exponentialPeriod(_ n: Int) -> Int {
        var period = 0
        while (1 << period) < n { period += 1 }
        return max(period, 1)
    }

    /// The topology of round t (0-based).
    public func topology(atRound t: Int) -> Topology {
        switch self {
        case .fixed(let topology):
            return topology
        case .periodic(_, let phases):
            return phases[t % phases.count]
        case .onePeerExponential(let n):
            let hop = (1 << (t % Self.exponentialPeriod(n))) % max(n, 1)
            var edges: [(Int, Int)] = []
            if n > 1 && hop != 0 {
                for i in 0..<n where !(2 * hop == n && i >= hop) { edges.append((i, (i + hop) % n)) }
            }
            let directed = !(n > 1 && 2 * hop == n)
            let graph = try! Graph(nodeCount: n, edges: edges, directed: directed)
            let weights = directed ? WeightRule.uniform : .metropolisHastings
            return try! Topology(
                name: "one-peer-exponential[hop \(hop)]", graph: graph, weights: weights, allowDisconnected: true)
        case .randomMatching(let n, let seed):
            var generator = SplitMix64(seed: seed, stream: 0x3A7C, substream: UInt64(t))
            var order = Array(0..<n)
            generator.shuffle(&order)
            let edges = stride(from: 0, to: n - 1, by: 2).map {
                (min(order[$0], order[$0 + 1]), max(order[$0], order[$0 + 1]))
            }
            let graph = try! Graph(nodeCount: n, edges: edges, directed: false)
            return try! Topology(
                name: "random-matching", graph: graph, weights: .metropolisHastings, allowDisconnected: true)
        case .randomPermutation(let base, let seed):
            var generator = SplitMix64(seed: seed, stream: 0x9E27, substream: UInt64(t))
            var permutation = Array(0..<base.nodeCount)
            generator.shuffle(&permutation)
            return base.relabeled(by: permutation)
        case .randomRegular(let n, let degree, let seed):
            var generator = SplitMix64(seed: seed, stream: 0x4E6A, substream: UInt64(t))
            // Validated when the schedule was made, so sampling succeeds.
            let graph = try! GraphGenerator.randomRegular(n: n, degree: degree, using: &generator)
            return try! Topology(
                name: "random-regular:\(degree)", graph: graph, weights: .metropolisHastings, allowDisconnected: true)
        case .withoutNodes(let base, let removed):
            return base.topology(atRound: t).removing(Set(removed))
        case .withDroppedLinks(let base, let links):
            let topology = base.topology(atRound: t)
            let dropped = links.filter { ($0.from...$0.to).contains(t + 1) }
            return dropped.isEmpty ? topology : topology.removingLinks(dropped.map { ($0.u, $0.v) })
        }
    }

    /// Schedule names for `--topology`: `one-peer-exponential`, `random-matching`,
    /// `random-permutation:BASE`, `random-regular-each-round:D`.
    public static let names = [
        "one-peer-exponential", "random-matching", "random-permutation:GENERATOR", "random-regular-each-round:D",
    ]

    /// Parses a schedule name; nil when `text` is not one.
    public static func parse(_ text: String, nodeCount: Int, seed: UInt64) throws(TopologyError) -> TopologySchedule? {
        if text == "one-peer-exponential" { return .onePeerExponential(nodeCount: nodeCount) }
        if text == "random-matching" { return .randomMatching(nodeCount: nodeCount, seed: seed) }
        if text.hasPrefix("random-permutation:") {
            let baseName = String(text.dropFirst("random-permutation:".count))
            guard let base = GraphGenerator(parsing: baseName) else {
                throw TopologyError(
                    reason:
                        "random-permutation: '\(baseName)' is not a generator (\(GraphGenerator.names.joined(separator: ", ")))"
                )
            }
            return .randomPermutation(base: try Topology.generated(base, nodeCount: nodeCount, seed: seed), seed: seed)
        }
        if text.hasPrefix("random-regular-each-round:") {
            guard let degree = Int(text.dropFirst("random-regular-each-round:".count)) else {
                throw TopologyError(reason: "'\(text)': expected random-regular-each-round:D with an integer D")
            }
            var generator = SplitMix64(seed: seed)
            _ = try GraphGenerator.randomRegular(n: nodeCount, degree: degree, using: &generator)
            return .randomRegular(nodeCount: nodeCount, degree: degree, seed: seed)
        }
        return nil
    }

    /// A stable hash for run configs.
    public var hash: String {
        let text: String
        switch self {
        case .fixed(let topology): return topology.hash
        case .periodic(_, let phases): text = phases.map { TopologyFile.format($0) }.joined(separator: "phase\n")
        case .randomPermutation(let base, let seed): text = "random-permutation \(seed)\n" + TopologyFile.format(base)
        default: text = "\(name) \(nodeCount) \(self)"
        }
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 {
            h ^= UInt64(byte)
            h = h &* 0x100_0000_01b3
        }
        let hex = String(h, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }
}

extension Topology {
    /// The topology without `removed` nodes: their edges are dropped, they keep only themselves
    /// (weight 1), and the survivors' weights are recomputed with the rule that produced this
    /// topology (Metropolis–Hastings, or column-stochastic for directed graphs, when none did).
    /// If that leaves the survivors disconnected, the removed nodes' former neighbours are joined
    /// in a chain, so gossip can still reach consensus.
    public func removing(_ removed: Set<Int>) -> Topology {
        let rule = weightRule ?? (isDirected ? .columnStochastic : .metropolisHastings)
        var edges = graph.edges.filter { !removed.contains($0.0) && !removed.contains($0.1) }
        func survivorsConnected(_ edges: [(Int, Int)]) -> Bool {
            let survivors = (0..<nodeCount).filter { !removed.contains($0) }
            guard let first = survivors.first else { return true }
            var adjacency = [[Int]](repeating: [], count: nodeCount)
            for (u, v) in edges {
                adjacency[u].append(v)
                adjacency[v].append(u)
            }
            var seen = Set([first])
            var stack = [first]
            while let node = stack.popLast() {
                for next in adjacency[node] where seen.insert(next).inserted { stack.append(next) }
            }
            return seen.count == survivors.count
        }
        if !survivorsConnected(edges) {
            let former = Set(removed.flatMap { graph.inNeighbors[$0] + graph.outNeighbors[$0] }).subtracting(removed)
                .sorted()
            let existing = Set(edges.map { "\($0.0)-\($0.1)" })
            for (u, v) in zip(former, former.dropFirst())
            where !existing.contains("\(u)-\(v)") && !existing.contains("\(v)-\(u)") {
                edges.append((u, v))
                if isDirected { edges.append((v, u)) }
            }
        }
        // Removing nodes from a valid topology keeps ids in range and edges distinct.
        let smaller = try! Graph(nodeCount: nodeCount, edges: edges, directed: isDirected)
        let label = name.hasSuffix("]") && name.contains(" without [") ? name : "\(name) without \(removed.sorted())"
        return (try? Topology(name: label, graph: smaller, weights: rule, allowDisconnected: true))
            ?? (try! Topology(
                name: label, graph: smaller, weights: isDirected ? .columnStochastic : .metropolisHastings,
                allowDisconnected: true))
    }
}

extension TopologySchedule {
    /// This schedule with `removed` nodes taken out of every round (see `Topology.removing`).
    public func removing(_ removed: Set<Int>) -> TopologySchedule {
        switch self {
        case .fixed(let topology): return .fixed(topology.removing(removed))
        case .periodic(let name, let phases): return .periodic(name: name, phases: phases.map { $0.removing(removed) })
        case .withoutNodes(let base, let earlier):
            return .withoutNodes(base, removed: Set(earlier).union(removed).sorted())
        default: return .withoutNodes(self, removed: removed.sorted())
        }
    }
}

/// A link absent in rounds from...to (1-based, inclusive).
public struct DroppedLink: Sendable, Equatable, Codable {
    public var u: Int
    public var v: Int
    public var from: Int
    public var to: Int
    public init(u: Int, v: Int, from: Int, to: Int) {
        self.u = u
        self.v = v
        self.from = from
        self.to = to
    }
}

extension Topology {
    /// The topology without the given links (both directions), weights recomputed with the rule
    /// that produced it; the graph may become disconnected for the rounds concerned.
    public func removingLinks(_ links: [(Int, Int)]) -> Topology {
        let rule = weightRule ?? (isDirected ? .columnStochastic : .metropolisHastings)
        let gone = Set(links.flatMap { ["\($0.0)-\($0.1)", "\($0.1)-\($0.0)"] })
        let edges = graph.edges.filter { !gone.contains("\($0.0)-\($0.1)") }
        let smaller = try! Graph(nodeCount: nodeCount, edges: edges, directed: isDirected)
        return (try? Topology(name: name, graph: smaller, weights: rule, allowDisconnected: true))
            ?? (try! Topology(name: name, graph: smaller, weights: .metropolisHastings, allowDisconnected: true))
    }
}

extension Topology {
    /// The weight rule that reproduces this topology's W exactly, if any (explicit weights have none).
    public var weightRule: WeightRule? {
        let rules: [WeightRule] = [.metropolisHastings, .uniform, .maximumDegree, .columnStochastic, .sinkhorn]
        return rules.first { rule in
            (try? Topology(name: name, graph: graph, weights: rule, allowDisconnected: true))?.mixing == mixing
        }
    }
}

/// Where plain gossip takes the workers' models: with row-stochastic mixing matrices, repeated
/// mixing converges to 1·πᵀx, the π-weighted average Σᵢ πᵢxᵢ, where π is the left Perron vector
/// (stationary distribution) of the period's product P = W_T⋯W_1 (πᵀP = πᵀ). π is uniform exactly
/// when the matrices are also column-stochastic (doubly stochastic); uniform weights on an
/// irregular graph are not, so such a run optimises a reweighted objective Σᵢ πᵢfᵢ instead of the
/// plain average (Nedić and Olshevsky 2015; push-sum exists to remove this bias).
public struct ConsensusTarget: Sendable, Equatable {
    /// π, summing to 1.
    public var weights: [Double]
    /// max over workers of |n·πᵢ − 1|: the largest relative over- or under-weighting of a worker.
    public var maximumRelativeDeviation: Double {
        weights.map { abs(Double(weights.count) * $0 - 1) }.max() ?? 0
    }
    /// ½·Σᵢ|πᵢ − 1/n|: the total-variation distance from uniform.
    public var totalVariation: Double {
        0.5 * weights.reduce(0) { $0 + abs($1 - 1 / Double(weights.count)) }
    }
    /// Whether π differs from uniform beyond rounding (1e-9 relative).
    public var isBiased: Bool { maximumRelativeDeviation > 1e-9 }

    /// In words, for logs and reports.
    public var description: String {
        let n = Double(weights.count)
        let smallest = weights.indices.min { weights[$0] < weights[$1] }!
        let largest = weights.indices.max { weights[$0] < weights[$1] }!
        func rounded(_ value: Double) -> Double { (value * 10_000).rounded() / 10_000 }
        return
            "gossip converges to the π-weighted average Σπᵢxᵢ, not the plain average: the mixing weights are row- but not column-stochastic; n·πᵢ ranges from \(rounded(n * weights[smallest])) (worker \(smallest)) to \(rounded(n * weights[largest])) (worker \(largest)); largest deviation from uniform \(rounded(100 * maximumRelativeDeviation)) %, total variation \(rounded(totalVariation))"
    }
}

extension TopologySchedule {
    /// The consensus target of plain gossip over this schedule: π of the period's product, for
    /// schedules with a period (fixed, periodic); nil for random schedules, and under push-sum
    /// (which de-biases to the plain average). Power iteration πᵀ ← πᵀW over the sparse rows,
    /// until π moves less than 1e-14 (at most 10⁶ periods).
    public var consensusTarget: ConsensusTarget? {
        guard !requiresPushSum, let period else { return nil }
        let phases = (0..<period).map { topology(atRound: $0) }
        guard phases.allSatisfy(\.isRowStochastic) else { return nil }
        let n = nodeCount
        if phases.allSatisfy(\.isColumnStochastic) {
            return ConsensusTarget(weights: [Double](repeating: 1 / Double(n), count: n))
        }
        var pi = [Double](repeating: 1 / Double(n), count: n)
        var next = pi
        for _ in 0..<1_000_000 {
            let previous = pi
            // πᵀP with P = W_T⋯W_1: multiply by W_T first.
            for phase in phases.reversed() {
                for j in 0..<n { next[j] = 0 }
                for (i, row) in phase.mixing.enumerated() {
                    for entry in row { next[entry.node] += pi[i] * entry.weight }
                }
                let total = next.reduce(0, +)
                for j in 0..<n { pi[j] = next[j] / total }
            }
            if zip(pi, previous).allSatisfy({ abs($0 - $1) < 1e-14 }) { return ConsensusTarget(weights: pi) }
        }
        return nil
    }
}
