/// A gossip graph without weights: n nodes and edges. In an undirected graph every edge goes both
/// ways; in a directed graph an edge u → v means v receives u's model.
public struct Graph: Sendable, Equatable, Codable {
    public let nodeCount: Int
    public let isDirected: Bool
    /// Sorted out-neighbours of each node (no self).
    public let outNeighbors: [[Int]]
    /// Sorted in-neighbours of each node (no self).
    public let inNeighbors: [[Int]]

    /// Builds a graph, rejecting ids out of range, self-loops and duplicate edges.
    public init(nodeCount: Int, edges: [(Int, Int)], directed: Bool) throws(TopologyError) {
        guard nodeCount >= 1 else { throw TopologyError(reason: "node count must be at least 1, got \(nodeCount)") }
        var outSets = [Set<Int>](repeating: [], count: nodeCount)
        for (u, v) in edges {
            guard (0..<nodeCount).contains(u), (0..<nodeCount).contains(v) else {
                throw TopologyError(reason: "edge \(u) \(v): node id out of range 0...\(nodeCount - 1)")
            }
            guard u != v else { throw TopologyError(reason: "edge \(u) \(v) is a self-loop; self weights are implied") }
            // Undirected edges are stored both ways, so this also catches `v u` after `u v`.
            guard !outSets[u].contains(v) else { throw TopologyError(reason: "duplicate edge \(u) \(v)") }
            outSets[u].insert(v)
            if !directed { outSets[v].insert(u) }
        }
        var inSets = [Set<Int>](repeating: [], count: nodeCount)
        for (u, targets) in outSets.enumerated() { for v in targets { inSets[v].insert(u) } }
        self.nodeCount = nodeCount
        isDirected = directed
        outNeighbors = outSets.map { $0.sorted() }
        inNeighbors = inSets.map { $0.sorted() }
    }

    private enum CodingKeys: String, CodingKey { case nodeCount, isDirected, outNeighbors, inNeighbors }

    /// Decodes through the checking initialiser: a hand-edited or hostile configuration with ids
    /// out of range, self-loops, duplicates or in-lists that disagree with the out-lists is an
    /// error naming the problem, never a graph that crashes later.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let nodeCount = try c.decode(Int.self, forKey: .nodeCount)
        let directed = try c.decode(Bool.self, forKey: .isDirected)
        let outNeighbors = try c.decode([[Int]].self, forKey: .outNeighbors)
        let inNeighbors = try c.decode([[Int]].self, forKey: .inNeighbors)
        guard nodeCount >= 1, nodeCount <= 1 << 20, outNeighbors.count == nodeCount else {
            throw DecodingError.dataCorrupted(
                .init(
                    codingPath: c.codingPath,
                    debugDescription: "graph: \(outNeighbors.count) neighbour lists for \(nodeCount) nodes"))
        }
        let arcs = outNeighbors.enumerated().flatMap { u, targets in targets.map { (u, $0) } }
        let edges = directed ? arcs : arcs.filter { $0.0 < $0.1 }
        do {
            self = try Graph(nodeCount: nodeCount, edges: edges, directed: directed)
        } catch {
            throw DecodingError.dataCorrupted(.init(codingPath: c.codingPath, debugDescription: "graph: \(error)"))
        }
        guard self.outNeighbors == outNeighbors, self.inNeighbors == inNeighbors else {
            throw DecodingError.dataCorrupted(
                .init(
                    codingPath: c.codingPath,
                    debugDescription: "graph: the neighbour lists are not sorted, symmetric or consistent"))
        }
    }

    /// Edges of an undirected graph counted once; arcs of a directed graph.
    public var edgeCount: Int {
        let arcs = outNeighbors.reduce(0) { $0 + $1.count }
        return isDirected ? arcs : arcs / 2
    }

    /// Every edge once: (u, v) with u < v when undirected, every arc when directed.
    public var edges: [(Int, Int)] {
        var result: [(Int, Int)] = []
        for (u, targets) in outNeighbors.enumerated() {
            for v in targets where isDirected || u < v { result.append((u, v)) }
        }
        return result
    }

    /// Number of out-neighbours (the degree, when undirected).
    public func degree(of node: Int) -> Int { outNeighbors[node].count }

    /// Every node reaches every other along edges (strong connectivity for directed graphs).
    public var isConnected: Bool {
        func reachesAll(_ adjacency: [[Int]]) -> Bool {
            var seen = [Bool](repeating: false, count: nodeCount)
            var stack = [0]
            seen[0] = true
            var count = 1
            while let node = stack.popLast() {
                for next in adjacency[node] where !seen[next] {
                    seen[next] = true
                    count += 1
                    stack.append(next)
                }
            }
            return count == nodeCount
        }
        return reachesAll(outNeighbors) && (!isDirected || reachesAll(inNeighbors))
    }

    /// Longest shortest path (in hops); nil when disconnected.
    public var diameter: Int? {
        var longest = 0
        var distance = [Int](repeating: -1, count: nodeCount)
        var queue = [Int](repeating: 0, count: nodeCount)
        for source in 0..<nodeCount {
            for i in 0..<nodeCount { distance[i] = -1 }
            distance[source] = 0
            var head = 0
            var tail = 1
            queue[0] = source
            while head < tail {
                let node = queue[head]
                head += 1
                for next in outNeighbors[node] where distance[next] < 0 {
                    distance[next] = distance[node] + 1
                    queue[tail] = next
                    tail += 1
                }
            }
            if tail < nodeCount { return nil }
            longest = max(longest, distance[queue[tail - 1]])
        }
        return longest
    }

    /// The same graph with node i renamed permutation[i].
    public func relabeled(by permutation: [Int]) -> Graph {
        let edges = self.edges.map { (permutation[$0.0], permutation[$0.1]) }
        // Relabelling a valid graph keeps it valid.
        return try! Graph(nodeCount: nodeCount, edges: edges, directed: isDirected)
    }
}
