/// One weight of a mixing row: node i gives `weight` to `node`'s parameters.
public struct MixingEntry: Sendable, Equatable, Codable {
    public var node: Int
    public var weight: Double
    public init(node: Int, weight: Double) {
        self.node = node
        self.weight = weight
    }
}

/// An undirected gossip graph with its mixing matrix W. Row i lists, sorted by node, the weights
/// node i gives to itself and to its neighbours; xᵢ ← Σⱼ Wᵢⱼ xⱼ. Stored sparsely.
public struct Topology: Sendable, Equatable, Codable {
    public let nodeCount: Int
    /// Sorted neighbour lists (no self).
    public let neighbors: [[Int]]
    /// Sparse rows of W, each including the self weight, sorted by node.
    public let mixing: [[MixingEntry]]
    /// A short human name: `ring`, `complete`, or the file name.
    public let name: String

    /// Builds a topology from undirected edges and a weight rule.
    /// - Parameter explicitWeights: if given, W[u][v] = W[v][u] for each listed edge, and the self
    ///   weight is 1 − Σ (must be ≥ 0).
    public init(
        name: String, nodeCount: Int, edges: [(Int, Int)], weights rule: WeightRule = .metropolisHastings,
        explicitWeights: [Double]? = nil
    ) throws(TopologyError) {
        guard nodeCount >= 1 else { throw TopologyError(reason: "node count must be at least 1, got \(nodeCount)") }
        var neighborSets = [Set<Int>](repeating: [], count: nodeCount)
        var weightOf: [Int: Double] = [:]
        for (index, (u, v)) in edges.enumerated() {
            guard (0..<nodeCount).contains(u), (0..<nodeCount).contains(v) else {
                throw TopologyError(reason: "edge \(u) \(v): node id out of range 0...\(nodeCount - 1)")
            }
            guard u != v else { throw TopologyError(reason: "edge \(u) \(v) is a self-loop; self weights are implied") }
            guard !neighborSets[u].contains(v) else { throw TopologyError(reason: "duplicate edge \(u) \(v)") }
            neighborSets[u].insert(v)
            neighborSets[v].insert(u)
            if let explicitWeights { weightOf[min(u, v) * nodeCount + max(u, v)] = explicitWeights[index] }
        }
        let neighbors = neighborSets.map { $0.sorted() }
        var mixing: [[MixingEntry]] = []
        for i in 0..<nodeCount {
            var row: [MixingEntry] = []
            var offDiagonal = 0.0
            for j in neighbors[i] {
                let w: Double
                if explicitWeights != nil {
                    w = weightOf[min(i, j) * nodeCount + max(i, j)]!
                } else {
                    switch rule {
                    case .metropolisHastings: w = 1 / Double(1 + max(neighbors[i].count, neighbors[j].count))
                    case .uniform: w = 1 / Double(1 + neighbors[i].count)
                    }
                }
                guard w.isFinite, w >= 0 else {
                    throw TopologyError(reason: "edge \(i) \(j): weight \(w) is negative or not finite")
                }
                row.append(MixingEntry(node: j, weight: w))
                offDiagonal += w
            }
            let selfWeight = 1 - offDiagonal
            guard selfWeight >= -1e-9 else {
                throw TopologyError(
                    reason: "node \(i): its edge weights sum to \(offDiagonal) > 1, leaving a negative self weight")
            }
            row.append(MixingEntry(node: i, weight: max(selfWeight, 0)))
            row.sort { $0.node < $1.node }
            mixing.append(row)
        }
        self.name = name
        self.nodeCount = nodeCount
        self.neighbors = neighbors
        self.mixing = mixing
    }

    /// Number of undirected edges.
    public var edgeCount: Int { neighbors.reduce(0) { $0 + $1.count } / 2 }

    /// Each node's in-neighbours (equal to its neighbours: the graph is undirected).
    public func inNeighbors(of node: Int) -> [Int] { neighbors[node] }
    public func outNeighbors(of node: Int) -> [Int] { neighbors[node] }

    /// W as a dense row-major n×n matrix (for tests and small reports).
    public var denseMixingMatrix: [Double] {
        var dense = [Double](repeating: 0, count: nodeCount * nodeCount)
        for (i, row) in mixing.enumerated() { for entry in row { dense[i * nodeCount + entry.node] = entry.weight } }
        return dense
    }

    /// True when every node can reach every other.
    public var isConnected: Bool {
        var seen = [Bool](repeating: false, count: nodeCount)
        var stack = [0]
        seen[0] = true
        while let node = stack.popLast() {
            for next in neighbors[node] where !seen[next] {
                seen[next] = true
                stack.append(next)
            }
        }
        return seen.allSatisfy { $0 }
    }

    /// Largest deviation of any row or column sum from 1.
    public var stochasticityError: Double {
        var columns = [Double](repeating: 0, count: nodeCount)
        var worst = 0.0
        for row in mixing {
            worst = max(worst, abs(row.reduce(0) { $0 + $1.weight } - 1))
            for entry in row { columns[entry.node] += entry.weight }
        }
        return max(worst, columns.map { abs($0 - 1) }.max() ?? 0)
    }
}

/// How mixing weights are derived from the graph when a file does not give them.
public enum WeightRule: String, Sendable, Codable, CaseIterable {
    /// Wᵢⱼ = 1 / (1 + max(dᵢ, dⱼ)) (Xiao and Boyd, "Fast linear iterations for distributed
    /// averaging", 2004): symmetric and doubly stochastic on any undirected graph.
    case metropolisHastings = "metropolis-hastings"
    /// Wᵢⱼ = 1 / (1 + dᵢ): row-stochastic; doubly stochastic only on regular graphs.
    case uniform
}

public struct TopologyError: Error, CustomStringConvertible, Equatable {
    public var reason: String
    public init(reason: String) { self.reason = reason }
    public var description: String { reason }
}

extension Topology {
    /// Ring on n nodes (node i ↔ i ± 1 mod n). n = 2 is one edge; n = 1 has none.
    public static func ring(nodeCount: Int, weights: WeightRule = .metropolisHastings) throws(TopologyError) -> Topology
    {
        var edges: [(Int, Int)] = []
        if nodeCount == 2 { edges = [(0, 1)] }
        if nodeCount > 2 { edges = (0..<nodeCount).map { ($0, ($0 + 1) % nodeCount) } }
        return try Topology(name: "ring", nodeCount: nodeCount, edges: edges, weights: weights)
    }

    /// Complete graph; with Metropolis–Hastings (or uniform) weights every entry is exactly 1/n,
    /// so one gossip step is exact all-reduce averaging: C-SGD.
    public static func complete(nodeCount: Int, weights: WeightRule = .metropolisHastings) throws(TopologyError)
        -> Topology
    {
        var edges: [(Int, Int)] = []
        for i in 0..<nodeCount { for j in (i + 1)..<max(nodeCount, i + 1) { edges.append((i, j)) } }
        return try Topology(name: "complete", nodeCount: nodeCount, edges: edges, weights: weights)
    }

    /// A stable 64-bit FNV-1a hash of the canonical edge-list text, recorded in run configs.
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
