/// The cells of a sweep: every combination of the axes' values, the first axis outermost.
public struct SweepPlan: Sendable, Equatable {
    public struct Cell: Sendable, Equatable, Codable {
        /// The cell's folder name: `axis=label` for every axis, joined by `_`, with characters
        /// outside [A-Za-z0-9.=+-] replaced by '-'.
        public var name: String
        /// (axis, label) in axis order.
        public var coordinates: [Coordinate]
        /// The run flags, the spec's `flags` first, then each axis's, as command-line arguments.
        public var arguments: [String]

        public struct Coordinate: Sendable, Equatable, Codable {
            public var axis: String
            public var label: String
        }
    }

    public var cells: [Cell]

    public init(_ spec: SweepSpec) throws {
        var combinations: [[(SweepSpec.Axis, SweepSpec.AxisValue)]] = [[]]
        for axis in spec.axes {
            combinations = combinations.flatMap { prefix in axis.values.map { prefix + [(axis, $0)] } }
        }
        var cells: [Cell] = []
        var names: [String: Int] = [:]
        for combination in combinations {
            let name = combination.map { Self.folderSafe("\($0.0.name)=\($0.1.label)") }.joined(separator: "_")
            if let earlier = names[name] {
                throw SweepSpecError(
                    file: "sweep spec", line: nil,
                    message:
                        "two cells get the folder name '\(name)' (cells \(earlier + 1) and \(cells.count + 1)); give the values distinct labels"
                )
            }
            names[name] = cells.count
            let flags = spec.flags + combination.flatMap { $0.1.flags }
            cells.append(
                Cell(
                    name: name,
                    coordinates: combination.map { Cell.Coordinate(axis: $0.0.name, label: $0.1.label) },
                    arguments: flags.flatMap(\.arguments)))
        }
        self.cells = cells
    }

    static func folderSafe(_ text: String) -> String {
        String(
            text.map { character in
                character.isASCII && (character.isLetter || character.isNumber || ".=+-".contains(character))
                    ? character : "-"
            })
    }
}

/// Which cell runs next, and what a finished attempt means: a failed cell gets `retries` more
/// attempts, then counts as failed; cells already completed (a resumed sweep) are skipped.
public struct SweepQueue: Sendable {
    public enum Status: String, Sendable, Codable { case pending, running, completed, failed }

    public struct Entry: Sendable, Codable, Equatable {
        public var cell: SweepPlan.Cell
        public var status: Status
        /// Attempts made in this invocation and earlier ones.
        public var attempts: Int
        /// Seconds of the last completed attempt.
        public var wallSeconds: Double?
        /// Why each failed attempt failed, oldest first.
        public var failures: [String]
    }

    public private(set) var entries: [Entry]
    public let retries: Int
    /// Attempts made by this invocation, per cell index.
    private var attemptsNow: [Int]

    /// - Parameters:
    ///   - completed: cells found completed in the sweep folder (skipped).
    ///   - earlier: what an earlier invocation recorded (attempt counts and failure reasons).
    public init(plan: SweepPlan, retries: Int, completed: Set<String>, earlier: [Entry] = []) {
        let byName = Dictionary(earlier.map { ($0.cell.name, $0) }, uniquingKeysWith: { $1 })
        entries = plan.cells.map { cell in
            let before = byName[cell.name]
            return Entry(
                cell: cell, status: completed.contains(cell.name) ? .completed : .pending,
                attempts: before?.attempts ?? 0,
                wallSeconds: completed.contains(cell.name) ? before?.wallSeconds : nil,
                failures: before?.failures ?? [])
        }
        self.retries = retries
        attemptsNow = Array(repeating: 0, count: plan.cells.count)
    }

    /// The next pending cell, marked running (nil: none is pending).
    public mutating func next() -> Int? {
        guard let index = entries.firstIndex(where: { $0.status == .pending }) else { return nil }
        entries[index].status = .running
        entries[index].attempts += 1
        attemptsNow[index] += 1
        return index
    }

    /// Records an attempt's end; a failure puts the cell back in the queue while attempts remain.
    public mutating func finish(_ index: Int, failure: String?, wallSeconds: Double) {
        precondition(entries[index].status == .running, "finish of a cell that is not running")
        if let failure {
            entries[index].failures.append("attempt \(entries[index].attempts): \(failure)")
            entries[index].status = attemptsNow[index] <= retries ? .pending : .failed
        } else {
            entries[index].status = .completed
            entries[index].wallSeconds = wallSeconds
        }
    }

    public func count(_ status: Status) -> Int { entries.filter { $0.status == status }.count }
    public var isFinished: Bool { !entries.contains { $0.status == .pending || $0.status == .running } }
}

/// The progress line of a sweep: cells done of all, elapsed time and the time left, estimated from
/// the mean wall time of the cells this invocation completed and the number running at once.
public func sweepProgressLine(
    done: Int, failed: Int, total: Int, running: Int, elapsedSeconds: Double, meanCellSeconds: Double?, parallel: Int
) -> String {
    let remaining = max(0, total - done - failed)
    var line = "sweep: \(done)/\(total) cells done"
    if failed > 0 { line += ", \(failed) failed" }
    if running > 0 { line += ", \(running) running" }
    line += " | \(formatDuration(elapsedSeconds)) elapsed"
    if let mean = meanCellSeconds, remaining > 0 {
        let waves = (Double(remaining) / Double(max(1, parallel))).rounded(.up)
        line += ", ETA \(formatDuration(waves * mean))"
    } else if remaining > 0 {
        line += ", ETA after the first cell"
    }
    return line
}

func formatDuration(_ seconds: Double) -> String {
    let total = Int(seconds.rounded())
    if total < 60 { return "\(total)s" }
    func twoDigits(_ value: Int) -> String { value < 10 ? "0\(value)" : "\(value)" }
    if total < 3600 { return "\(total / 60)m\(twoDigits(total % 60))s" }
    return "\(total / 3600)h\(twoDigits((total % 3600) / 60))m"
}
