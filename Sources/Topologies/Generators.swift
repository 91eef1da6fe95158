import LearningCore

/// A named graph family with its parameters spelled out. `make` is pure and, for the random
/// families, seeded: the same seed gives the same graph.
public enum GraphGenerator: Sendable, Equatable, Codable, CustomStringConvertible {
    /// Node i ↔ i ± 1 mod n.
    case ring
    /// The chain 0 – 1 – … – n−1.
    case path
    /// rows × cols grid without wrap-around.
    case grid(rows: Int, columns: Int)
    /// rows × cols grid with wrap-around.
    case torus(rows: Int, columns: Int)
    /// Nodes are bit strings of length log₂ n; edges join strings one bit apart (n a power of 2).
    case hypercube
    /// Directed: i → i + 2^k mod n for 2^k < n (BlueFog's ExponentialTwo graph).
    case exponential
    /// Undirected: i ↔ i ± 2^k mod n for 2^k < n.
    case symmetricExponential
    case complete
    /// Node 0 joined to every other node.
    case star
    /// Node i's children are 2i+1 and 2i+2.
    case binaryTree
    /// Cliques on ⌈n/2⌉ and ⌊n/2⌋ nodes joined by the single edge 0 – ⌈n/2⌉.
    case twoCliques
    /// A uniformly random simple d-regular graph (pairing model with rejection), seeded; connected.
    case randomRegular(degree: Int)
    /// G(n, p), resampled until connected, seeded.
    case erdosRenyi(probability: Double)
    /// Watts–Strogatz: a ring lattice with k nearest neighbours (k even), each edge rewired with
    /// probability β (Watts and Strogatz, Nature 1998); resampled until connected, seeded.
    case wattsStrogatz(neighbors: Int, rewiring: Double)
    /// No edges: every worker trains alone (the local-training baseline).
    case solo

    public static let names = [
        "ring", "path", "grid:RxC", "torus:RxC", "hypercube", "exponential", "symmetric-exponential", "complete",
        "star",
        "binary-tree", "two-cliques", "random-regular:D", "erdos-renyi:P", "watts-strogatz:K:BETA", "solo",
    ]

    /// Parses `ring`, `torus:4x4`, `random-regular:3`, `erdos-renyi:0.2`, `watts-strogatz:4:0.1`, …
    public init?(parsing text: String) {
        let parts = text.split(separator: ":").map(String.init)
        func dims(_ s: String) -> (Int, Int)? {
            let d = s.split(separator: "x").compactMap { Int($0) }
            return d.count == 2 && d[0] > 0 && d[1] > 0 ? (d[0], d[1]) : nil
        }
        switch (parts.first ?? "", parts.count) {
        case ("ring", 1): self = .ring
        case ("path", 1): self = .path
        case ("grid", 2): guard let (r, c) = dims(parts[1]) else { return nil }; self = .grid(rows: r, columns: c)
        case ("torus", 2): guard let (r, c) = dims(parts[1]) else { return nil }; self = .torus(rows: r, columns: c)
        case ("hypercube", 1): self = .hypercube
        case ("exponential", 1): self = .exponential
        case ("symmetric-exponential", 1): self = .symmetricExponential
        case ("complete", 1): self = .complete
        case ("star", 1): self = .star
        case ("binary-tree", 1): self = .binaryTree
        case ("two-cliques", 1): self = .twoCliques
        case ("random-regular", 2): guard let d = Int(parts[1]) else { return nil }; self = .randomRegular(degree: d)
        case ("erdos-renyi", 2): guard let p = Double(parts[1]) else { return nil }; self = .erdosRenyi(probability: p)
        case ("watts-strogatz", 3):
            guard let k = Int(parts[1]), let beta = Double(parts[2]) else { return nil }
            self = .wattsStrogatz(neighbors: k, rewiring: beta)
        case ("solo", 1): self = .solo
        default: return nil
        }
    }

    public var description: String {
        switch self {
        case .ring: "ring"
        case .path: "path"
        case .grid(let r, let c): "grid:\(r)x\(c)"
        case .torus(let r, let c): "torus:\(r)x\(c)"
        case .hypercube: "hypercube"
        case .exponential: "exponential"
        case .symmetricExponential: "symmetric-exponential"
        case .complete: "complete"
        case .star: "star"
        case .binaryTree: "binary-tree"
        case .twoCliques: "two-cliques"
        case .randomRegular(let d): "random-regular:\(d)"
        case .erdosRenyi(let p): "erdos-renyi:\(p)"
        case .wattsStrogatz(let k, let beta): "watts-strogatz:\(k):\(beta)"
        case .solo: "solo"
        }
    }

    /// The default weight rule: push-sum weights for directed graphs, Metropolis–Hastings otherwise
    /// (uniform 1/n on the complete graph, i.e. exact all-reduce).
    public var defaultWeights: WeightRule {
        switch self {
        case .exponential: .uniform  // regular in- and out-degree: uniform weights are doubly stochastic
        default: .metropolisHastings
        }
    }

    public func make(nodeCount n: Int, seed: UInt64 = 0) throws(TopologyError) -> Graph {
        guard n >= 1 else { throw TopologyError(reason: "\(self): node count must be at least 1, got \(n)") }
        var generator = SplitMix64(seed: seed, stream: 0x7090)
        switch self {
        case .ring:
            return try Graph(
                nodeCount: n, edges: n == 2 ? [(0, 1)] : n > 2 ? (0..<n).map { ($0, ($0 + 1) % n) } : [],
                directed: false)
        case .path:
            return try Graph(nodeCount: n, edges: (0..<max(n - 1, 0)).map { ($0, $0 + 1) }, directed: false)
        case .grid(let rows, let columns), .torus(let rows, let columns):
            guard rows * columns == n else {
                throw TopologyError(reason: "\(self) has \(rows * columns) nodes, not \(n)")
            }
            let wrap = { if case .torus = self { return true } else { return false } }()
            var edges = Set<[Int]>()
            for r in 0..<rows {
                for c in 0..<columns {
                    let node = r * columns + c
                    for (nr, nc) in [(r, c + 1), (r + 1, c)] {
                        guard wrap || (nr < rows && nc < columns) else { continue }
                        let other = (nr % rows) * columns + (nc % columns)
                        if other != node { edges.insert([min(node, other), max(node, other)]) }
                    }
                }
            }
            return try Graph(
                nodeCount: n, edges: edges.sorted { $0.lexicographicallyPrecedes($1) }.map { ($0[0], $0[1]) },
                directed: false)
        case .hypercube:
            guard n & (n - 1) == 0 else { throw TopologyError(reason: "hypercube needs a power of 2 nodes, not \(n)") }
            var edges: [(Int, Int)] = []
            for i in 0..<n {
                var bit = 1
                while bit < n {
                    if i & bit == 0 { edges.append((i, i | bit)) }
                    bit <<= 1
                }
            }
            return try Graph(nodeCount: n, edges: edges, directed: false)
        case .exponential:
            var edges: [(Int, Int)] = []
            for i in 0..<n {
                var hop = 1
                while hop < n {
                    edges.append((i, (i + hop) % n))
                    hop <<= 1
                }
            }
            return try Graph(nodeCount: n, edges: edges, directed: true)
        case .symmetricExponential:
            var edges = Set<[Int]>()
            for i in 0..<n {
                var hop = 1
                while hop < n {
                    let j = (i + hop) % n
                    if j != i { edges.insert([min(i, j), max(i, j)]) }
                    hop <<= 1
                }
            }
            return try Graph(
                nodeCount: n, edges: edges.sorted { $0.lexicographicallyPrecedes($1) }.map { ($0[0], $0[1]) },
                directed: false)
        case .complete:
            var edges: [(Int, Int)] = []
            for i in 0..<n { for j in (i + 1)..<max(n, i + 1) { edges.append((i, j)) } }
            return try Graph(nodeCount: n, edges: edges, directed: false)
        case .star:
            return try Graph(nodeCount: n, edges: (1..<max(n, 1)).map { (0, $0) }, directed: false)
        case .binaryTree:
            return try Graph(nodeCount: n, edges: (1..<max(n, 1)).map { (($0 - 1) / 2, $0) }, directed: false)
        case .twoCliques:
            let first = (n + 1) / 2
            var edges: [(Int, Int)] = []
            for i in 0..<first { for j in (i + 1)..<max(first, i + 1) { edges.append((i, j)) } }
            for i in first..<n { for j in (i + 1)..<max(n, i + 1) { edges.append((i, j)) } }
            if first < n { edges.append((0, first)) }
            return try Graph(nodeCount: n, edges: edges, directed: false)
        case .randomRegular(let degree):
            return try Self.randomRegular(n: n, degree: degree, using: &generator)
        case .erdosRenyi(let p):
            guard p > 0, p <= 1 else {
                throw TopologyError(reason: "erdos-renyi probability must be in (0, 1], got \(p)")
            }
            for _ in 0..<1_000 {
                var edges: [(Int, Int)] = []
                for i in 0..<n {
                    for j in (i + 1)..<max(n, i + 1) where generator.nextUnitDouble() < p { edges.append((i, j)) }
                }
                let graph = try Graph(nodeCount: n, edges: edges, directed: false)
                if graph.isConnected { return graph }
            }
            throw TopologyError(reason: "erdos-renyi:\(p) on \(n) nodes stayed disconnected in 1,000 draws; raise p")
        case .wattsStrogatz(let k, let beta):
            guard k >= 2, k % 2 == 0, k < n else {
                throw TopologyError(reason: "watts-strogatz needs an even k with 2 ≤ k < n, got k = \(k) for n = \(n)")
            }
            guard beta >= 0, beta <= 1 else {
                throw TopologyError(reason: "watts-strogatz β must be in [0, 1], got \(beta)")
            }
            for _ in 0..<1_000 {
                var adjacency = [Set<Int>](repeating: [], count: n)
                for i in 0..<n {
                    for hop in 1...(k / 2) {
                        let j = (i + hop) % n
                        adjacency[i].insert(j)
                        adjacency[j].insert(i)
                    }
                }
                for i in 0..<n {
                    for hop in 1...(k / 2) {
                        let j = (i + hop) % n
                        guard adjacency[i].contains(j), generator.nextUnitDouble() < beta else { continue }
                        let candidates = (0..<n).filter { $0 != i && !adjacency[i].contains($0) }
                        guard !candidates.isEmpty else { continue }
                        let target = candidates[Int(generator.next() % UInt64(candidates.count))]
                        adjacency[i].remove(j)
                        adjacency[j].remove(i)
                        adjacency[i].insert(target)
                        adjacency[target].insert(i)
                    }
                }
                var edges: [(Int, Int)] = []
                for i in 0..<n { for j in adjacency[i].sorted() where i < j { edges.append((i, j)) } }
                let graph = try Graph(nodeCount: n, edges: edges, directed: false)
                if graph.isConnected { return graph }
            }
            throw TopologyError(reason: "\(self) on \(n) nodes stayed disconnected in 1,000 draws")
        case .solo:
            return try Graph(nodeCount: n, edges: [], directed: false)
        }
    }

    /// A random connected simple d-regular graph on n nodes. For d ≤ 5 the configuration model
    /// with rejection (a uniform sample; a simple pairing comes up with probability about
    /// exp(−(d² − 1)/4) ≥ 0.25 %, so 10,000 draws do not fail in practice); for d ≥ 6, where that
    /// probability falls below 10⁻⁴ and rejection fails (in about a fifth of draws at d = 6,
    /// always at d = 8), and as a fallback, a circulant d-regular graph randomised by
    /// degree-preserving double-edge swaps (`swapRandomized`), which cannot fail.
    static func randomRegular(n: Int, degree d: Int, using generator: inout SplitMix64) throws(TopologyError) -> Graph {
        guard d >= 0, d < n, (n * d) % 2 == 0 else {
            throw TopologyError(reason: "random-regular:\(d) on \(n) nodes needs 0 ≤ d < n and n·d even")
        }
        guard d != 1 || n == 2 else {
            throw TopologyError(reason: "random-regular:1 on \(n) nodes is a matching, never connected; use d ≥ 2")
        }
        if d >= 6 { return try swapRandomized(n: n, degree: d, using: &generator) }
        for _ in 0..<10_000 {
            var stubs = (0..<n).flatMap { [Int](repeating: $0, count: d) }
            generator.shuffle(&stubs)
            var seen = Set<Int>()
            var edges: [(Int, Int)] = []
            var ok = true
            for k in stride(from: 0, to: stubs.count, by: 2) {
                let (u, v) = (min(stubs[k], stubs[k + 1]), max(stubs[k], stubs[k + 1]))
                if u == v || !seen.insert(u * n + v).inserted {
                    ok = false
                    break
                }
                edges.append((u, v))
            }
            guard ok else { continue }
            let graph = try Graph(nodeCount: n, edges: edges, directed: false)
            if d == 0 && n > 1 { return graph }
            if graph.isConnected { return graph }
        }
        return try swapRandomized(n: n, degree: d, using: &generator)
    }

    /// Starts from the circulant graph i ↔ i ± 1, …, ± ⌊d/2⌋ (and i ↔ i + n/2 for odd d, n even),
    /// which is connected and d-regular, then makes 10·n·d random double-edge swaps
    /// {a–b, c–e} → {a–c, b–e} that keep the graph simple (the standard Markov chain on d-regular
    /// graphs); swaps continue while the result is disconnected, and the circulant graph is kept
    /// if that never ends (it is connected), so this always returns a valid graph.
    static func swapRandomized(n: Int, degree d: Int, using generator: inout SplitMix64) throws(TopologyError)
        -> Graph
    {
        var adjacency = [Set<Int>](repeating: [], count: n)
        for i in 0..<n {
            for hop in 1...max(d / 2, 1) where d >= 2 {
                adjacency[i].insert((i + hop) % n)
                adjacency[(i + hop) % n].insert(i)
            }
            if d % 2 == 1 {
                adjacency[i].insert((i + n / 2) % n)
                adjacency[(i + n / 2) % n].insert(i)
            }
        }
        let circulant = adjacency
        func edgeList() -> [(Int, Int)] {
            adjacency.enumerated().flatMap { u, targets in targets.sorted().filter { u < $0 }.map { (u, $0) } }
        }
        var edges = edgeList()
        func swaps(_ count: Int) {
            for _ in 0..<count {
                let i = Int(generator.next() % UInt64(edges.count))
                let j = Int(generator.next() % UInt64(edges.count))
                guard i != j else { continue }
                var (a, b) = edges[i]
                let (c, e) = edges[j]
                if generator.next() & 1 == 1 { (a, b) = (b, a) }
                // {a–b, c–e} → {a–c, b–e}, only if that stays simple.
                guard a != c, b != e, !adjacency[a].contains(c), !adjacency[b].contains(e) else { continue }
                adjacency[a].remove(b)
                adjacency[b].remove(a)
                adjacency[c].remove(e)
                adjacency[e].remove(c)
                adjacency[a].insert(c)
                adjacency[c].insert(a)
                adjacency[b].insert(e)
                adjacency[e].insert(b)
                edges[i] = (min(a, c), max(a, c))
                edges[j] = (min(b, e), max(b, e))
            }
        }
        swaps(10 * n * d)
        for _ in 0..<100 {
            let graph = try Graph(nodeCount: n, edges: edgeList(), directed: false)
            if graph.isConnected { return graph }
            swaps(n * d)
        }
        adjacency = circulant
        return try Graph(nodeCount: n, edges: edgeList(), directed: false)
    }
}

extension Topology {
    /// A generated topology with the generator's default weights (or `weights`).
    public static func generated(
        _ generator: GraphGenerator, nodeCount: Int, seed: UInt64 = 0, weights: WeightRule? = nil
    ) throws(TopologyError) -> Topology {
        let graph = try generator.make(nodeCount: nodeCount, seed: seed)
        return try Topology(
            name: generator.description, graph: graph, weights: weights ?? generator.defaultWeights,
            allowDisconnected: generator == .solo || (generator == .randomRegular(degree: 0)))
    }

    /// Ring on n nodes (node i ↔ i ± 1 mod n). n = 2 is one edge; n = 1 has none.
    public static func ring(nodeCount: Int, weights: WeightRule = .metropolisHastings) throws(TopologyError) -> Topology
    {
        try generated(.ring, nodeCount: nodeCount, weights: weights)
    }

    /// Complete graph; with Metropolis–Hastings (or uniform) weights every entry is exactly 1/n,
    /// so one gossip step is exact all-reduce averaging: C-SGD.
    public static func complete(nodeCount: Int, weights: WeightRule = .metropolisHastings) throws(TopologyError)
        -> Topology
    {
        try generated(.complete, nodeCount: nodeCount, weights: weights)
    }
}
