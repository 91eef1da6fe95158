import Topologies

/// Faults injected on purpose, for experiments on robustness. All are part of the run
/// configuration (so they are in config.json and repeat with the run) and listed in the summary.
public enum Fault: Sendable, Equatable, Codable, CustomStringConvertible {
    /// Worker `worker` sleeps `seconds` before its local steps in rounds `rounds` (1-based, inclusive).
    case straggler(worker: Int, seconds: Double, rounds: ClosedRange<Int>)
    /// The link between u and v is absent in rounds `rounds`: both ends leave it out of their
    /// mixing and the weights are recomputed for those rounds.
    case dropLink(u: Int, v: Int, rounds: ClosedRange<Int>)
    /// Models sent from u to v in rounds `rounds` arrive `seconds` late.
    case delayLink(u: Int, v: Int, seconds: Double, rounds: ClosedRange<Int>)
    /// Worker `worker` kills itself (SIGKILL) before round `round` (0: while loading its data,
    /// before the start barrier).
    case kill(worker: Int, round: Int)

    public var description: String {
        switch self {
        case .straggler(let w, let s, let r):
            "worker \(w) delayed \(s) s per round in rounds \(r.lowerBound)–\(r.upperBound)"
        case .dropLink(let u, let v, let r): "link \(u)–\(v) dropped in rounds \(r.lowerBound)–\(r.upperBound)"
        case .delayLink(let u, let v, let s, let r):
            "link \(u)→\(v) delayed \(s) s in rounds \(r.lowerBound)–\(r.upperBound)"
        case .kill(let w, let r):
            r == 0 ? "worker \(w) killed while loading its data" : "worker \(w) killed before round \(r)"
        }
    }

    /// Whether every worker and round it names is in the run, and its seconds are a finite ≥ 0.
    public func isWithin(workers: Int, rounds: Int) -> Bool {
        let nodes = 0..<workers
        func fits(_ r: ClosedRange<Int>) -> Bool { r.lowerBound >= 1 }
        switch self {
        case .straggler(let w, let s, let r): return nodes.contains(w) && s.isFinite && s >= 0 && fits(r)
        case .dropLink(let u, let v, let r): return nodes.contains(u) && nodes.contains(v) && u != v && fits(r)
        case .delayLink(let u, let v, let s, let r):
            return nodes.contains(u) && nodes.contains(v) && u != v && s.isFinite && s >= 0 && fits(r)
        case .kill(let w, let round): return nodes.contains(w) && round >= 0
        }
    }

    /// Parses `W:SECONDS[:FROM-TO]`, `U:V:FROM-TO`, `U:V:SECONDS:FROM-TO`, `W:ROUND` for the
    /// respective flags; `flag` names the flag in errors.
    public static func parse(_ text: String, kind: String, workers: Int, rounds: Int) throws(ConfigurationError)
        -> Fault
    {
        let parts = text.split(separator: ":").map(String.init)
        func fail(_ reason: String) -> ConfigurationError {
            ConfigurationError(field: "--\(kind)", reason: "'\(text)': \(reason)")
        }
        func worker(_ s: String) throws(ConfigurationError) -> Int {
            guard let w = Int(s), (0..<workers).contains(w) else {
                throw fail("'\(s)' is not a worker in 0..<\(workers)")
            }
            return w
        }
        func range(_ s: String) throws(ConfigurationError) -> ClosedRange<Int> {
            let ends = s.split(separator: "-").compactMap { Int($0) }
            guard ends.count == 2, ends[0] >= 1, ends[0] <= ends[1] else {
                throw fail("'\(s)' is not a round range FROM-TO (1-based)")
            }
            return ends[0]...ends[1]
        }
        func seconds(_ s: String) throws(ConfigurationError) -> Double {
            guard let value = Double(s), value >= 0, value.isFinite else {
                throw fail("'\(s)' is not a number of seconds")
            }
            return value
        }
        switch (kind, parts.count) {
        case ("straggler", 2):
            return .straggler(worker: try worker(parts[0]), seconds: try seconds(parts[1]), rounds: 1...rounds)
        case ("straggler", 3):
            return .straggler(worker: try worker(parts[0]), seconds: try seconds(parts[1]), rounds: try range(parts[2]))
        case ("drop-link", 3):
            return .dropLink(u: try worker(parts[0]), v: try worker(parts[1]), rounds: try range(parts[2]))
        case ("delay-link", 4):
            return .delayLink(
                u: try worker(parts[0]), v: try worker(parts[1]), seconds: try seconds(parts[2]),
                rounds: try range(parts[3]))
        case ("kill-worker", 2):
            guard let round = Int(parts[1]), round >= 0, round <= rounds else {
                throw fail("'\(parts[1])' is not a round in 0…\(rounds) (0: while loading its data)")
            }
            return .kill(worker: try worker(parts[0]), round: round)
        default:
            throw fail(
                "expected \(["straggler": "W:SECONDS[:FROM-TO]", "drop-link": "U:V:FROM-TO", "delay-link": "U:V:SECONDS:FROM-TO", "kill-worker": "W:ROUND"][kind] ?? "?")"
            )
        }
    }
}

extension TopologySchedule {
    /// The schedule with `dropLink` faults applied (links absent in their rounds).
    public func dropping(_ faults: [Fault]) -> TopologySchedule {
        let links: [DroppedLink] = faults.compactMap {
            if case .dropLink(let u, let v, let r) = $0 {
                return DroppedLink(u: u, v: v, from: r.lowerBound, to: r.upperBound)
            }
            return nil
        }
        return links.isEmpty ? self : .withDroppedLinks(self, links: links)
    }
}
