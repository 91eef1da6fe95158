/// The `.edges` text format (after decentralizepy): the first non-comment line is the node count,
/// then one undirected edge `u v` or `u v w` per line; `#` starts a comment. Optional header lines
/// before the edges: `weights metropolis-hastings|uniform`. When any edge has a weight, all must,
/// and each node's self weight is 1 − Σ of its edge weights. Parsing and formatting are pure.
public enum TopologyFile {
    public static func parse(_ text: String, name: String) throws(TopologyFileError) -> Topology {
        var nodeCount: Int?
        var rule = WeightRule.metropolisHastings
        var edges: [(Int, Int)] = []
        var weights: [Double] = []
        var edgeLines: [Int] = []
        var firstLineOfEdge: [Int: Int] = [:]
        var weightedLines = 0
        for (offset, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let lineNumber = offset + 1
            let content = rawLine.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            let fields = content.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" || $0 == "," })
            if fields.isEmpty { continue }
            func fail(_ reason: String) -> TopologyFileError {
                TopologyFileError(file: name, line: lineNumber, reason: reason)
            }
            if fields[0] == "weights" {
                guard nodeCount != nil, edges.isEmpty, fields.count == 2,
                    let parsed = WeightRule(rawValue: String(fields[1]))
                else {
                    throw fail(
                        "expected 'weights metropolis-hastings' or 'weights uniform' after the node count, before the edges"
                    )
                }
                rule = parsed
                continue
            }
            guard let count = nodeCount else {
                guard fields.count == 1, let n = Int(fields[0]), n >= 1 else {
                    throw fail("the first line must be the node count (a positive integer), got '\(content.trimmed)'")
                }
                nodeCount = n
                continue
            }
            guard fields.count == 2 || fields.count == 3 else {
                throw fail("expected 'u v' or 'u v w', got '\(content.trimmed)'")
            }
            guard let u = Int(fields[0]), let v = Int(fields[1]) else {
                throw fail("node ids must be integers, got '\(fields[0])' and '\(fields[1])'")
            }
            guard (0..<count).contains(u), (0..<count).contains(v) else {
                throw fail(
                    "node id out of range: edge \(u) \(v) but the file declares \(count) nodes (ids 0...\(count - 1))")
            }
            guard u != v else { throw fail("self-loop \(u) \(v): self weights are implied, do not list them") }
            let key = min(u, v) * count + max(u, v)
            if let previous = firstLineOfEdge[key] {
                throw fail("duplicate edge \(u) \(v) (first given on line \(previous))")
            }
            firstLineOfEdge[key] = lineNumber
            if fields.count == 3 {
                guard let w = Double(fields[2]), w.isFinite, w >= 0 else {
                    throw fail("weight '\(fields[2])' must be a finite non-negative number")
                }
                weights.append(w)
                weightedLines += 1
            } else {
                weights.append(.nan)
            }
            edges.append((u, v))
            edgeLines.append(lineNumber)
        }
        guard let count = nodeCount else {
            throw TopologyFileError(
                file: name, line: 1, reason: "empty topology file: the first line must be the node count")
        }
        if weightedLines > 0 && weightedLines < edges.count {
            let line = zip(weights, edgeLines).first { $0.0.isNaN }!.1
            throw TopologyFileError(
                file: name, line: line, reason: "this edge has no weight but others do: give all or none")
        }
        let topology: Topology
        do {
            topology = try Topology(
                name: name, nodeCount: count, edges: edges, weights: rule,
                explicitWeights: weightedLines > 0 ? weights : nil)
        } catch {
            throw TopologyFileError(file: name, line: nil, reason: error.reason)
        }
        guard topology.isConnected else {
            throw TopologyFileError(
                file: name, line: nil, reason: "the graph is disconnected: gossip cannot reach consensus")
        }
        return topology
    }

    /// Canonical text: node count, then every edge once (u < v) with its weight.
    public static func format(_ topology: Topology) -> String {
        var lines = ["\(topology.nodeCount)"]
        for (i, row) in topology.mixing.enumerated() {
            for entry in row where entry.node > i { lines.append("\(i) \(entry.node) \(entry.weight)") }
        }
        return lines.joined(separator: "\n") + "\n"
    }
}

public struct TopologyFileError: Error, CustomStringConvertible, Equatable {
    public var file: String
    public var line: Int?
    public var reason: String
    public var description: String { line.map { "\(file):\($0): \(reason)" } ?? "\(file): \(reason)" }
}

extension Substring {
    fileprivate var trimmed: String {
        String(
            self.drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" || $0 == "\r" }.reversed())
    }
}
