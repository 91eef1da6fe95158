import ArgumentParser
import Foundation
import LearningCore
import Topologies

struct TopologyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "topology", abstract: "Inspect or generate gossip topologies.",
        subcommands: [Inspect.self, Generate.self])

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
            FileHandle.standardOutput.write(Data(text.utf8))
        }
    }
}
