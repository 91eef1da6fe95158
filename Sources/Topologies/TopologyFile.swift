/// The text formats of `topologies/` (documented in topologies/README.md). Parsing and
/// formatting are pure and round-trip.
///
/// - Edge list: the node count, then `u v` or `u v w` per line; optional header lines before the
///   first edge: `directed`, `weights RULE`, `allow-disconnected`.
/// - Dense matrix: a `matrix` header line, then W row by row (n rows of n numbers).
/// - Schedule: a `schedule` header line, then one edge list or matrix per phase, each introduced
///   by a `phase` line; round t uses phase t mod (number of phases).
public enum TopologyFile {
    /// Larger graphs are rejected before anything is allocated for them.
    public static let maximumNodeCount = 100_000

    /// Parses a static topology (an edge list or a matrix).
    public static func parse(_ text: String, name: String) throws(TopologyFileError) -> Topology {
        let lines = numberedLines(text)
        if let first = lines.first, first.fields == ["schedule"] {
            throw TopologyFileError(
                file: name, line: first.number, reason: "this is a schedule; use it as --topology FILE for a run")
        }
        return try parseBlock(lines, name: name, fileName: name)
    }

    /// Parses any topology file: a static one becomes a fixed schedule.
    public static func parseSchedule(_ text: String, name: String) throws(TopologyFileError) -> TopologySchedule {
        let lines = numberedLines(text)
        guard let first = lines.first, first.fields == ["schedule"] else {
            return .fixed(try parseBlock(lines, name: name, fileName: name))
        }
        var phases: [Topology] = []
        var block: [NumberedLine] = []
        var sawPhase = false
        func flush() throws(TopologyFileError) {
            guard sawPhase else { return }
            guard !block.isEmpty else {
                throw TopologyFileError(file: name, line: first.number, reason: "phase \(phases.count) is empty")
            }
            phases.append(try parseBlock(block, name: "\(name)[phase \(phases.count)]", fileName: name))
            block = []
        }
        for line in lines.dropFirst() {
            if line.fields == ["phase"] {
                try flush()
                sawPhase = true
            } else {
                guard sawPhase else {
                    throw TopologyFileError(
                        file: name, line: line.number,
                        reason: "expected a 'phase' line before the first graph of a schedule")
                }
                block.append(line)
            }
        }
        try flush()
        guard let firstPhase = phases.first else {
            throw TopologyFileError(file: name, line: first.number, reason: "a schedule needs at least one 'phase'")
        }
        if let odd = phases.firstIndex(where: { $0.nodeCount != firstPhase.nodeCount }) {
            throw TopologyFileError(
                file: name, line: nil,
                reason: "phase \(odd) has \(phases[odd].nodeCount) nodes but phase 0 has \(firstPhase.nodeCount)")
        }
        return .periodic(name: name, phases: phases)
    }

    struct NumberedLine {
        var number: Int
        var fields: [String]
        var text: String
    }

    static func numberedLines(_ text: String) -> [NumberedLine] {
        var result: [NumberedLine] = []
        for (offset, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let content = rawLine.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            let fields = content.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" || $0 == "," }).map(
                String.init)
            if !fields.isEmpty {
                result.append(NumberedLine(number: offset + 1, fields: fields, text: fields.joined(separator: " ")))
            }
        }
        return result
    }

    private static func parseBlock(_ lines: [NumberedLine], name: String, fileName: String) throws(TopologyFileError)
        -> Topology
    {
        var directed = false
        var allowDisconnected = false
        var rule: WeightRule?
        var isMatrix = false
        var nodeCount: Int?
        var edges: [(Int, Int)] = []
        var weights: [Double] = []
        var edgeLines: [Int] = []
        var weightedLines = 0
        var firstLineOfEdge: [Int: Int] = [:]
        var matrixRows: [[Double]] = []
        var matrixLines: [Int] = []
        func fail(_ line: NumberedLine, _ reason: String) -> TopologyFileError {
            TopologyFileError(file: fileName, line: line.number, reason: reason)
        }
        for line in lines {
            let fields = line.fields
            let beforeData = edges.isEmpty && matrixRows.isEmpty
            switch fields[0] {
            case "directed" where fields.count == 1 && beforeData:
                directed = true
                continue
            case "allow-disconnected" where fields.count == 1 && beforeData:
                allowDisconnected = true
                continue
            case "matrix" where fields.count == 1 && beforeData && nodeCount == nil:
                isMatrix = true
                continue
            case "weights":
                guard beforeData, !isMatrix, fields.count == 2, let parsed = WeightRule(rawValue: fields[1]) else {
                    throw fail(
                        line,
                        "expected 'weights RULE' before the edges, RULE one of \(WeightRule.allCases.map(\.rawValue).joined(separator: ", "))"
                    )
                }
                rule = parsed
                continue
            case "directed", "allow-disconnected", "matrix":
                throw fail(line, "'\(fields[0])' must come before the first edge or row")
            default:
                break
            }
            if isMatrix {
                var row: [Double] = []
                for field in fields {
                    guard let value = Double(field) else { throw fail(line, "'\(field)' is not a number") }
                    guard value.isFinite, value >= 0 else {
                        throw fail(line, "weight '\(field)' must be a finite non-negative number")
                    }
                    row.append(value)
                }
                if let width = matrixRows.first?.count, row.count != width {
                    throw fail(line, "this row has \(row.count) entries, the first row has \(width)")
                }
                matrixRows.append(row)
                matrixLines.append(line.number)
                continue
            }
            guard let count = nodeCount else {
                guard fields.count == 1, let n = Int(fields[0]), n >= 1 else {
                    throw fail(line, "the first line must be the node count (a positive integer), got '\(line.text)'")
                }
                guard n <= maximumNodeCount else {
                    throw fail(line, "node count \(n) exceeds the supported maximum of \(maximumNodeCount)")
                }
                nodeCount = n
                continue
            }
            guard fields.count == 2 || fields.count == 3 else {
                throw fail(line, "expected 'u v' or 'u v w', got '\(line.text)'")
            }
            guard let u = Int(fields[0]), let v = Int(fields[1]) else {
                throw fail(line, "node ids must be integers, got '\(fields[0])' and '\(fields[1])'")
            }
            guard (0..<count).contains(u), (0..<count).contains(v) else {
                throw fail(
                    line,
                    "node id out of range: edge \(u) \(v) but the file declares \(count) nodes (ids 0...\(count - 1))")
            }
            guard u != v else { throw fail(line, "self-loop \(u) \(v): self weights are implied, do not list them") }
            let key = directed ? u * count + v : min(u, v) * count + max(u, v)
            if let previous = firstLineOfEdge[key] {
                throw fail(line, "duplicate edge \(u) \(v) (first given on line \(previous))")
            }
            firstLineOfEdge[key] = line.number
            if fields.count == 3 {
                guard let w = Double(fields[2]), w.isFinite, w >= 0 else {
                    throw fail(line, "weight '\(fields[2])' must be a finite non-negative number")
                }
                weights.append(w)
                weightedLines += 1
            } else {
                weights.append(.nan)
            }
            edges.append((u, v))
            edgeLines.append(line.number)
        }
        do {
            if isMatrix {
                guard !matrixRows.isEmpty else {
                    throw TopologyFileError(
                        file: fileName, line: lines.first?.number, reason: "a matrix needs at least one row")
                }
                if matrixRows.count != matrixRows[0].count {
                    throw TopologyFileError(
                        file: fileName, line: matrixLines.last,
                        reason:
                            "the matrix has \(matrixRows.count) rows of \(matrixRows[0].count) entries; W must be square"
                    )
                }
                do {
                    return try Topology(
                        name: name, denseMatrix: matrixRows, directed: directed, allowDisconnected: allowDisconnected)
                } catch {
                    // Point at the row a row-sum error names.
                    if error.reason.hasPrefix("row "), let row = Int(error.reason.dropFirst(4).prefix { $0.isNumber }) {
                        throw TopologyFileError(file: fileName, line: matrixLines[row], reason: error.reason)
                    }
                    throw error
                }
            }
            guard let count = nodeCount else {
                throw TopologyFileError(
                    file: fileName, line: lines.first?.number ?? 1,
                    reason: "empty topology file: the first line must be the node count")
            }
            if weightedLines > 0 && weightedLines < edges.count {
                let line = zip(weights, edgeLines).first { $0.0.isNaN }!.1
                throw TopologyFileError(
                    file: fileName, line: line, reason: "this edge has no weight but others do: give all or none")
            }
            if weightedLines > 0 && rule != nil {
                throw TopologyFileError(
                    file: fileName, line: edgeLines.first,
                    reason: "explicit weights and a 'weights' rule conflict: use one")
            }
            let graph = try Graph(nodeCount: count, edges: edges, directed: directed)
            if weightedLines > 0 {
                // Graph.edges lists undirected edges as (min, max) in node order; map our weights to it.
                var weightOf: [Int: Double] = [:]
                for ((u, v), w) in zip(edges, weights) {
                    weightOf[directed ? u * count + v : min(u, v) * count + max(u, v)] = w
                }
                let ordered = graph.edges.map { weightOf[directed ? $0.0 * count + $0.1 : $0.0 * count + $0.1]! }
                return try Topology(
                    name: name, graph: graph, explicitWeights: ordered, allowDisconnected: allowDisconnected)
            }
            return try Topology(
                name: name, graph: graph, weights: rule ?? (directed ? .columnStochastic : .metropolisHastings),
                allowDisconnected: allowDisconnected)
        } catch let error as TopologyFileError {
            throw error
        } catch let error as TopologyError {
            throw TopologyFileError(file: fileName, line: nil, reason: error.reason)
        } catch {
            throw TopologyFileError(file: fileName, line: nil, reason: "\(error)")
        }
    }

    /// Canonical text: the edge list with a `weights RULE` header when a rule reproduces W exactly,
    /// with explicit weights when W is row-stochastic and symmetric, and the matrix form otherwise.
    public static func format(_ topology: Topology) -> String {
        var lines: [String] = []
        if topology.isDirected { lines.append("directed") }
        if topology.allowsDisconnected { lines.append("allow-disconnected") }
        if let rule = topology.weightRule {
            if rule != (topology.isDirected ? .columnStochastic : .metropolisHastings) {
                lines.append("weights \(rule.rawValue)")
            }
            lines.append("\(topology.nodeCount)")
            for (u, v) in topology.graph.edges { lines.append("\(u) \(v)") }
            return lines.joined(separator: "\n") + "\n"
        }
        if !topology.isRowStochastic || (!topology.isDirected && !topology.isSymmetric) {
            lines.append("matrix")
            let dense = topology.denseMixingMatrix
            let n = topology.nodeCount
            for i in 0..<n { lines.append((0..<n).map { "\(dense[i * n + $0])" }.joined(separator: " ")) }
            return lines.joined(separator: "\n") + "\n"
        }
        lines.append("\(topology.nodeCount)")
        for (u, v) in topology.graph.edges {
            let weight = topology.mixing[v].first { $0.node == u }!.weight
            lines.append("\(u) \(v) \(weight)")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// A schedule in the schedule form (a static one as its single topology).
    public static func format(_ schedule: TopologySchedule, rounds: Int? = nil) -> String {
        switch schedule {
        case .fixed(let topology):
            return format(topology)
        default:
            let count = schedule.period ?? rounds ?? 1
            return "schedule\n" + (0..<count).map { "phase\n" + format(schedule.topology(atRound: $0)) }.joined()
        }
    }
}

public struct TopologyFileError: Error, CustomStringConvertible, Equatable {
    public var file: String
    public var line: Int?
    public var reason: String
    public var description: String { line.map { "\(file):\($0): \(reason)" } ?? "\(file): \(reason)" }
}
