import ArgumentParser
import Foundation
import LearningCore
import Topologies

#if canImport(Glibc)
    import Glibc
#endif

struct TopologyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "topology", abstract: "Inspect or generate gossip topologies.",
        subcommands: [Inspect.self, Generate.self, Bench.self])

    struct Source: ParsableArguments {
        @Argument(help: "A generator, a schedule name, or a topology file.")
        var spec: String

        @Option(help: "Node count (for generators and schedules; files state their own).")
        var nodes: Int?

        @Option(help: "Seed for random generators and schedules.")
        var seed: UInt64 = 0

        @Option(help: "Mixing weights for a generator: \(WeightRule.allCases.map(\.rawValue).joined(separator: ", ")).")
        var weights: WeightRule?

        func load() throws -> TopologySchedule {
            let isFile = FileManager.default.fileExists(atPath: spec)
            guard isFile || nodes != nil else {
                throw ValidationError("--nodes is required for the generator or schedule '\(spec)'")
            }
            return try loadSchedule(spec, nodeCount: nodes ?? 1, seed: seed, weights: weights, flag: "topology")
        }
    }

    struct Inspect: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print size, degrees, diameter, stochasticity, spectral gap and predicted consensus contraction.")

        @OptionGroup var source: Source

        @Option(help: "Write an SVG picture of the graph and a heatmap of W (the first phase of a schedule).")
        var svg: String?

        @Option(help: "Rounds sampled for a random schedule's spectrum.")
        var sampleRounds: Int = 16

        @Flag(help: "Print JSON instead of text.")
        var json = false

        func run() throws {
            let clock = ContinuousClock()
            let started = clock.now
            let schedule = try source.load()
            let loaded = clock.now
            let spectrum = ScheduleSpectrum(schedule, sampleRounds: sampleRounds)
            let analysed = clock.now
            let first = schedule.topology(atRound: 0)
            if let svg {
                try Data(TopologyPicture.svg(first).utf8).write(to: URL(fileURLWithPath: svg))
            }
            let degrees = (0..<first.nodeCount).map { first.graph.degree(of: $0) }
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                let report = InspectReport(
                    name: schedule.name, nodes: schedule.nodeCount, directed: first.isDirected, edges: first.edgeCount,
                    period: schedule.period, spectrum: spectrum, pushSum: schedule.requiresPushSum)
                print(String(decoding: try encoder.encode(report), as: UTF8.self))
                return
            }
            print("topology      \(schedule.name)\(schedule.isStatic ? "" : " (time-varying)")")
            print("nodes         \(schedule.nodeCount)")
            print(
                "edges         \(first.edgeCount)\(first.isDirected ? " (directed)" : "")\(schedule.isStatic ? "" : " in round 1")"
            )
            print(
                "degree        min \(degrees.min() ?? 0), mean \(String(format: "%.2f", Double(degrees.reduce(0, +)) / Double(max(degrees.count, 1)))), max \(degrees.max() ?? 0)"
            )
            print("diameter      \(first.graph.diameter.map(String.init) ?? "∞ (disconnected)")")
            print(
                "W             row-stochastic \(yes(first.isRowStochastic)), column-stochastic \(yes(first.isColumnStochastic)), doubly stochastic \(yes(first.isDoublyStochastic)), symmetric \(yes(first.isSymmetric))"
            )
            if schedule.requiresPushSum { print("gossip        push-sum (W is column- but not row-stochastic)") }
            if let period = schedule.period, period > 1 { print("period        \(period) rounds") }
            if schedule.period == nil {
                print("sampled       \(spectrum.productRounds) rounds of a random schedule (--seed \(source.seed))")
            }
            for (index, phase) in spectrum.phases.enumerated() where spectrum.phases.count > 1 {
                print(
                    "  phase \(index): spectral gap \(number(phase.spectralGap))\(phase.contraction.map { ", σ \(number($0))" } ?? "")"
                )
            }
            let label =
                spectrum.productRounds > 1
                ? "spectral gap of the product over \(spectrum.productRounds) rounds" : "spectral gap"
            print(
                "\(label)  \(number(spectrum.product.spectralGap))   (1 − max(|λ₂|, |λₙ|) = 1 − \(number(spectrum.product.secondLargestModulus)))"
            )
            if let perRound = spectrum.consensusContractionPerRound {
                print("predicted Ξ² contraction per round (no gradients)  ≤ \(number(perRound))")
            } else {
                print("predicted Ξ² contraction per round  n/a (W is not doubly stochastic)")
            }
            print(
                String(
                    format: "time          load %.3f s, spectrum %.3f s", (loaded - started) / .seconds(1),
                    (analysed - loaded) / .seconds(1)))
            if let svg { print("picture       \(svg)") }
        }

        private func yes(_ flag: Bool) -> String { flag ? "yes" : "no" }
        private func number(_ x: Double) -> String { String(format: "%.6g", x) }
    }

    struct InspectReport: Encodable {
        var name: String
        var nodes: Int
        var directed: Bool
        var edges: Int
        var period: Int?
        var spectrum: ScheduleSpectrum
        var pushSum: Bool
    }

    struct Generate: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write a topology file (the schedule form for time-varying schedules) to standard output.")

        @OptionGroup var source: Source

        @Option(help: "Phases to write for a random schedule (periodic ones write one period).")
        var rounds: Int = 16

        func run() throws {
            let schedule = try source.load()
            var text =
                "# \(schedule.name), \(schedule.nodeCount) nodes, written by dsgd topology generate (seed \(source.seed))\n"
            text += TopologyFile.format(schedule, rounds: rounds)
            try FileHandle.standardOutput.write(contentsOf: Data(text.utf8))
        }
    }

    struct Bench: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Time generation, validation (weights, checks, file round trip) and the spectral gap for n = 64, 256, 1024."
        )

        @Option(parsing: .upToNextOption, help: "Node counts.")
        var nodes: [Int] = [64, 256, 1024]

        func run() throws {
            BLAS.useSingleThread()
            let clock = ContinuousClock()
            func seconds(_ body: () throws -> Void) rethrows -> Double {
                let start = clock.now
                try body()
                return (clock.now - start) / .seconds(1)
            }
            print("generator              n   generate   validate  file r/t   spectrum   spectral gap")
            for spec in ["ring", "torus", "exponential", "random-regular:4", "erdos-renyi", "one-peer-exponential"] {
                for n in nodes {
                    var graph: Graph?
                    var topology: Topology?
                    var gap = 0.0
                    let side = Int(Double(n).squareRoot())
                    let generator: GraphGenerator? =
                        switch spec {
                        case "torus": .torus(rows: side, columns: n / side)
                        case "erdos-renyi": .erdosRenyi(probability: min(1, 3 * log(Double(n)) / Double(n)))
                        default: GraphGenerator(parsing: spec)
                        }
                    var generate = 0.0
                    var validate = 0.0
                    var roundTrip = 0.0
                    var spectrum = 0.0
                    if let generator {
                        generate = try seconds { graph = try generator.make(nodeCount: n, seed: 1) }
                        validate = try seconds {
                            topology = try Topology(name: spec, graph: graph!, weights: generator.defaultWeights)
                        }
                        roundTrip = try seconds {
                            _ = try TopologyFile.parse(TopologyFile.format(topology!), name: spec)
                        }
                        spectrum = seconds { gap = Spectrum.summary(of: topology!).spectralGap }
                    } else {
                        let schedule = TopologySchedule.onePeerExponential(nodeCount: n)
                        generate = seconds { topology = schedule.topology(atRound: 0) }
                        spectrum = seconds { gap = ScheduleSpectrum(schedule).product.spectralGap }
                    }
                    print(
                        String(
                            format: "%@ %5d %9.4fs %9.4fs %9.4fs %9.4fs   %.6g",
                            spec.padding(toLength: 20, withPad: " ", startingAt: 0), n, generate, validate, roundTrip,
                            spectrum, gap))
                }
            }
            print("(one-peer-exponential: the spectrum column covers every phase and the product over one period)")
        }
    }
}
