/// One weight of a mixing row: node i gives `weight` to `node`'s parameters.
public struct MixingEntry: Sendable, Equatable, Codable {
    public var node: Int
    public var weight: Double
    public init(node: Int, weight: Double) {
        self.node = node
        self.weight = weight
    }
}

/// How mixing weights are derived from the graph when a file does not give them.
public enum WeightRule: String, Sendable, Codable, CaseIterable {
    /// Wᵢⱼ = 1 / (1 + max(dᵢ, dⱼ)) (Xiao and Boyd, "Fast linear iterations for distributed
    /// averaging", 2004): symmetric and doubly stochastic on any undirected graph.
    case metropolisHastings = "metropolis-hastings"
    /// Wᵢⱼ = 1 / (1 + dᵢ⁻) over in-neighbours: row-stochastic; doubly stochastic only on regular graphs.
    case uniform
    /// Wᵢⱼ = 1 / (1 + Δ) with Δ the maximum degree, Wᵢᵢ = 1 − dᵢ/(1 + Δ) (a lazy walk): symmetric
    /// and doubly stochastic on undirected graphs.
    case maximumDegree = "maximum-degree"
    /// Sinkhorn–Knopp scaling of the uniform weights on the support (edges and self-loops) until
    /// every row and column sums to 1 within 1e-12 (Sinkhorn and Knopp, 1967).
    case sinkhorn
    /// Push-sum weights for directed graphs: node j splits its mass equally among itself and its
    /// out-neighbours, Aᵢⱼ = 1 / (1 + dⱼ⁺): column-stochastic (Kempe et al., FOCS 2003).
    case columnStochastic = "column-stochastic"
}

/// A gossip topology: a graph and its mixing matrix W, stored sparsely. Row i lists, sorted by
/// node, the weights node i applies to itself and to its in-neighbours: xᵢ ← Σⱼ Wᵢⱼ xⱼ.
public struct Topology: Sendable, Equatable, Codable {
    /// A short human name: a generator spec such as `ring` or `torus:4x4`, or a file name.
    public let name: String
    public let graph: Graph
    /// Sparse rows of W, each including the self weight, sorted by node.
    public let mixing: [[MixingEntry]]
    /// A disconnected graph was explicitly allowed (`solo`, or `allow-disconnected` in a file).
    public let allowsDisconnected: Bool

    /// Tolerance for row and column sums and for symmetry: weights written with six or more
    /// significant digits pass; a genuinely wrong row is off by far more.
    public static let tolerance = 1e-6

    /// Weights from a rule. Disconnected graphs are an error unless `allowDisconnected`.
    public init(name: String, graph: Graph, weights rule: WeightRule, allowDisconnected: Bool = false)
        throws(TopologyError)
    {
        let n = graph.nodeCount
        var rows: [[MixingEntry]] = []
        switch rule {
        case .metropolisHastings, .uniform, .maximumDegree:
            if graph.isDirected && rule != .uniform {
                throw TopologyError(
                    reason: "\(rule.rawValue) weights need an undirected graph; use uniform or column-stochastic")
            }
            let maximumDegree = (0..<n).map { graph.inNeighbors[$0].count }.max() ?? 0
            for i in 0..<n {
                var row: [MixingEntry] = []
                for j in graph.inNeighbors[i] {
                    let w: Double
                    switch rule {
                    case .metropolisHastings:
                        w = 1 / Double(1 + max(graph.inNeighbors[i].count, graph.inNeighbors[j].count))
                    case .uniform: w = 1 / Double(1 + graph.inNeighbors[i].count)
                    default: w = 1 / Double(1 + maximumDegree)
                    }
                    row.append(MixingEntry(node: j, weight: w))
                }
                row.append(MixingEntry(node: i, weight: max(0, 1 - row.reduce(0) { $0 + $1.weight })))
                rows.append(row.sorted { $0.node < $1.node })
            }
        case .columnStochastic:
            for i in 0..<n {
                var row = graph.inNeighbors[i].map {
                    MixingEntry(node: $0, weight: 1 / Double(1 + graph.outNeighbors[$0].count))
                }
                row.append(MixingEntry(node: i, weight: 1 / Double(1 + graph.outNeighbors[i].count)))
                rows.append(row.sorted { $0.node < $1.node })
            }
        case .sinkhorn:
            rows = try Self.sinkhorn(graph)
        }
        try self.init(
            name: name, graph: graph, mixing: rows, allowDisconnected: allowDisconnected,
            requireRowStochastic: rule != .columnStochastic)
    }

    /// Explicit weights: `weights[k]` is what the target of edge k gives its source (both ways when
    /// undirected); each node keeps 1 − Σ of its row.
    public init(
        name: String, graph: Graph, explicitWeights: [Double], allowDisconnected: Bool = false
    ) throws(TopologyError) {
        let edges = graph.edges
        precondition(explicitWeights.count == edges.count, "one weight per edge")
        var rowMaps = [[Int: Double]](repeating: [:], count: graph.nodeCount)
        for ((u, v), w) in zip(edges, explicitWeights) {
            guard w.isFinite, w >= 0 else {
                throw TopologyError(reason: "edge \(u) \(v): weight \(w) is negative or not finite")
            }
            rowMaps[v][u] = w
            if !graph.isDirected { rowMaps[u][v] = w }
        }
        var rows: [[MixingEntry]] = []
        for i in 0..<graph.nodeCount {
            // Summed in node order, as the rules do, so the self weight is the same bits every time.
            var row = rowMaps[i].sorted { $0.key < $1.key }.map { MixingEntry(node: $0.key, weight: $0.value) }
            let offDiagonal = row.reduce(0) { $0 + $1.weight }
            guard offDiagonal <= 1 + Self.tolerance else {
                throw TopologyError(
                    reason: "node \(i): its edge weights sum to \(offDiagonal) > 1, leaving a negative self weight")
            }
            row.append(MixingEntry(node: i, weight: max(0, 1 - offDiagonal)))
            rows.append(row.sorted { $0.node < $1.node })
        }
        try self.init(
            name: name, graph: graph, mixing: rows, allowDisconnected: allowDisconnected, requireRowStochastic: true)
    }

    /// A full matrix W (row-major n×n); the graph is its off-diagonal support.
    public init(name: String, denseMatrix w: [[Double]], directed: Bool, allowDisconnected: Bool = false)
        throws(TopologyError)
    {
        let n = w.count
        var edges: [(Int, Int)] = []
        var rows: [[MixingEntry]] = []
        for i in 0..<n {
            guard w[i].count == n else {
                throw TopologyError(reason: "row \(i) has \(w[i].count) entries, expected \(n)")
            }
            var row: [MixingEntry] = []
            for j in 0..<n {
                let value = w[i][j]
                guard value.isFinite, value >= 0 else {
                    throw TopologyError(reason: "W[\(i)][\(j)] = \(value) is negative or not finite")
                }
                if value > 0 || i == j { row.append(MixingEntry(node: j, weight: value)) }
                if value > 0 && i != j && (directed || j < i) { edges.append((j, i)) }
            }
            rows.append(row)
        }
        if !directed {
            for i in 0..<n {
                for j in 0..<i where abs(w[i][j] - w[j][i]) > Self.tolerance {
                    throw TopologyError(
                        reason:
                            "W[\(i)][\(j)] = \(w[i][j]) but W[\(j)][\(i)] = \(w[j][i]): an undirected matrix must be symmetric (or declare 'directed')"
                    )
                }
            }
        }
        let graph = try Graph(nodeCount: n, edges: edges, directed: directed)
        let rowSums = rows.map { $0.reduce(0) { $0 + $1.weight } }
        let columnStochastic = !rowSums.allSatisfy({ abs($0 - 1) <= Self.tolerance }) && directed
        try self.init(
            name: name, graph: graph, mixing: rows, allowDisconnected: allowDisconnected,
            requireRowStochastic: !columnStochastic)
    }

    private init(
        name: String, graph: Graph, mixing: [[MixingEntry]], allowDisconnected: Bool, requireRowStochastic: Bool,
        requireSymmetric: Bool = false
    ) throws(TopologyError) {
        self.name = name
        self.graph = graph
        self.mixing = mixing
        self.allowsDisconnected = allowDisconnected
        if requireRowStochastic {
            if let (row, sum) = rowSums.enumerated().first(where: { abs($0.element - 1) > Self.tolerance }).map({
                ($0.offset, $0.element)
            }) {
                throw TopologyError(reason: "row \(row) of W sums to \(sum), not 1 (tolerance \(Self.tolerance))")
            }
        } else if let (column, sum) = columnSums.enumerated().first(where: { abs($0.element - 1) > Self.tolerance })
            .map({ ($0.offset, $0.element) })
        {
            throw TopologyError(
                reason: "column \(column) of W sums to \(sum), not 1 (tolerance \(Self.tolerance)), as push-sum needs")
        }
        if requireSymmetric && !graph.isDirected && !isSymmetric {
            throw TopologyError(reason: "the graph is undirected but W is not symmetric")
        }
        if !allowDisconnected && graph.nodeCount > 1 && !graph.isConnected {
            throw TopologyError(
                reason:
                    "the graph is disconnected: gossip cannot reach consensus (declare 'allow-disconnected' if intended)"
            )
        }
    }

    private enum CodingKeys: String, CodingKey { case name, graph, mixing, allowsDisconnected }

    /// Decodes through the same checks as a topology file: one row per node, entries only on the
    /// graph's edges and the diagonal, finite non-negative weights, rows (or, for push-sum,
    /// columns) summing to 1, connectivity unless allowed.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let name = try c.decode(String.self, forKey: .name)
        let graph = try c.decode(Graph.self, forKey: .graph)
        let mixing = try c.decode([[MixingEntry]].self, forKey: .mixing)
        let allowDisconnected = try c.decode(Bool.self, forKey: .allowsDisconnected)
        func corrupted(_ reason: String) -> DecodingError {
            .dataCorrupted(.init(codingPath: c.codingPath, debugDescription: "topology \(name): \(reason)"))
        }
        guard mixing.count == graph.nodeCount else {
            throw corrupted("\(mixing.count) rows of W for \(graph.nodeCount) nodes")
        }
        for (i, row) in mixing.enumerated() {
            let allowed = Set(graph.inNeighbors[i] + [i])
            guard zip(row, row.dropFirst()).allSatisfy({ $0.node < $1.node }) else {
                throw corrupted("row \(i) of W is not sorted by node or repeats one")
            }
            for entry in row {
                guard allowed.contains(entry.node) else {
                    throw corrupted("W[\(i)][\(entry.node)] is not on an edge of the graph")
                }
                guard entry.weight.isFinite, entry.weight >= 0 else {
                    throw corrupted("W[\(i)][\(entry.node)] = \(entry.weight) is not a finite non-negative weight")
                }
            }
        }
        let rowStochastic = mixing.allSatisfy { abs($0.reduce(0) { $0 + $1.weight } - 1) <= Self.tolerance }
        do {
            try self.init(
                name: name, graph: graph, mixing: mixing, allowDisconnected: allowDisconnected,
                requireRowStochastic: rowStochastic)
        } catch {
            throw corrupted("\(error)")
        }
    }

    private static func sinkhorn(_ graph: Graph) throws(TopologyError) -> [[MixingEntry]] {
        let n = graph.nodeCount
        var rows = (0..<n).map { i in (graph.inNeighbors[i] + [i]).sorted().map { MixingEntry(node: $0, weight: 1) } }
        for _ in 0..<10_000 {
            for i in 0..<n {
                let sum = rows[i].reduce(0) { $0 + $1.weight }
                for k in rows[i].indices { rows[i][k].weight /= sum }
            }
            var columns = [Double](repeating: 0, count: n)
            for row in rows { for entry in row { columns[entry.node] += entry.weight } }
            if columns.allSatisfy({ abs($0 - 1) < 1e-12 }) { return rows }
            for i in 0..<n { for k in rows[i].indices { rows[i][k].weight /= columns[rows[i][k].node] } }
        }
        throw TopologyError(
            reason:
                "Sinkhorn scaling did not converge in 10,000 iterations: this support has no doubly stochastic scaling")
    }

    // MARK: - Queries

    public var nodeCount: Int { graph.nodeCount }
    public var isDirected: Bool { graph.isDirected }
    public var edgeCount: Int { graph.edgeCount }
    /// Neighbour lists (out-neighbours; equal to in-neighbours when undirected).
    public var neighbors: [[Int]] { graph.outNeighbors }
    public func inNeighbors(of node: Int) -> [Int] { graph.inNeighbors[node] }
    public func outNeighbors(of node: Int) -> [Int] { graph.outNeighbors[node] }
    public var isConnected: Bool { graph.isConnected }

    public var rowSums: [Double] { mixing.map { $0.reduce(0) { $0 + $1.weight } } }
    public var columnSums: [Double] {
        var sums = [Double](repeating: 0, count: nodeCount)
        for row in mixing { for entry in row { sums[entry.node] += entry.weight } }
        return sums
    }
    public var isRowStochastic: Bool { rowSums.allSatisfy { abs($0 - 1) <= Self.tolerance } }
    public var isColumnStochastic: Bool { columnSums.allSatisfy { abs($0 - 1) <= Self.tolerance } }
    public var isDoublyStochastic: Bool { isRowStochastic && isColumnStochastic }
    public var isSymmetric: Bool {
        var lookup = [Int: Double]()
        for (i, row) in mixing.enumerated() { for entry in row { lookup[i * nodeCount + entry.node] = entry.weight } }
        return lookup.allSatisfy { key, value in
            let (i, j) = (key / nodeCount, key % nodeCount)
            return abs((lookup[j * nodeCount + i] ?? 0) - value) <= Self.tolerance
        }
    }
    /// W is column- but not row-stochastic: plain averaging would drift, push-sum is needed.
    public var requiresPushSum: Bool { !isRowStochastic && isColumnStochastic }

    /// Largest deviation of any row or column sum from 1.
    public var stochasticityError: Double {
        max(rowSums.map { abs($0 - 1) }.max() ?? 0, columnSums.map { abs($0 - 1) }.max() ?? 0)
    }

    /// W as a dense row-major n×n matrix (for tests and spectra).
    public var denseMixingMatrix: [Double] {
        var dense = [Double](repeating: 0, count: nodeCount * nodeCount)
        for (i, row) in mixing.enumerated() { for entry in row { dense[i * nodeCount + entry.node] = entry.weight } }
        return dense
    }

    /// The same topology with node i renamed permutation[i] (weights travel with their edges).
    public func relabeled(by permutation: [Int], name: String? = nil) -> Topology {
        var rows = [[MixingEntry]](repeating: [], count: nodeCount)
        for (i, row) in mixing.enumerated() {
            rows[permutation[i]] = row.map { MixingEntry(node: permutation[$0.node], weight: $0.weight) }.sorted {
                $0.node < $1.node
            }
        }
        // A relabelled valid topology is valid.
        return try! Topology(
            name: name ?? self.name, graph: graph.relabeled(by: permutation), mixing: rows,
            allowDisconnected: allowsDisconnected,
            requireRowStochastic: isRowStochastic)
    }

    /// A stable 64-bit FNV-1a hash of the canonical text, recorded in run configs.
    public var hash: String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in TopologyFile.format(self).utf8 {
            h ^= UInt64(byte)
            h = h &* 0x100_0000_01b3
        }
        let hex = String(h, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }
}

public struct TopologyError: Error, CustomStringConvertible, Equatable {
    public var reason: String
    public init(reason: String) { self.reason = reason }
    public var description: String { reason }
}
