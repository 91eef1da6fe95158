import ArgumentParser
import Foundation
import Reports
import Runtime

struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report", abstract: "Build a run's report.html, or compare several runs.",
        subcommands: [Build.self, Compare.self, Trajectory.self, Finalize.self], defaultSubcommand: Build.self)

    struct Build: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Rebuild RUN_DIR/report.html from the run's files.")

        @Argument(help: "A run folder.")
        var runDirectory: String

        func run() throws {
            let path = try writeReport(URL(fileURLWithPath: runDirectory))
            print(path)
        }
    }

    struct Finalize: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "For launchers: if RUN_DIR has no summary.json (its coordinator died), write one marked failed with REASON, then the report."
        )

        @Argument(help: "A run folder.")
        var runDirectory: String

        @Option(help: "Why the run ended (recorded as the summary's reason).")
        var reason: String

        func run() throws {
            let directory = URL(fileURLWithPath: runDirectory)
            if try RunSummary.writeFallback(in: directory, reason: reason) {
                print("wrote \(directory.appendingPathComponent("summary.json").path) (failed: \(reason))")
            }
            print(try writeReport(directory))
        }
    }

    struct Trajectory: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "λ_max of x̄ along training against 2/η, over the seeds of each configuration (runs differing only in the seed form one group)."
        )

        @Argument(help: "Run folders.")
        var runDirectories: [String]

        @Option(help: "Also write the tables in Markdown to this file.")
        var markdown: String?

        func run() throws {
            guard !runDirectories.isEmpty else { throw ValidationError("give at least one run folder") }
            let groups = try seedGroups(try loadRuns(runDirectories), distinctSeeds: true)
            let (table, markdownTables) = ReportPage.sharpnessTrajectory(groups)
            if let markdown { try Data((markdownTables + "\n").utf8).write(to: URL(fileURLWithPath: markdown)) }
            print(table)
        }
    }

    struct Compare: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Overlay several runs (test accuracy, Ξ², λ_max) and print a table of final figures.",
            discussion: """
                Runs whose configurations differ only in the seed form one group: when some group has more than
                one seed, every figure is given over its seeds as mean ± sd [95 % Student-t interval] (n seeds),
                and the charts draw the mean with a ± 1 sd band (--per-run: one row per run instead).
                """)

        @Argument(help: "Run folders.")
        var runDirectories: [String]

        @Option(help: "Where to write the comparison page.")
        var output: String = "comparison.html"

        @Option(help: "Also write the table in Markdown to this file.")
        var markdown: String?

        @Flag(
            help:
                "The per-client figures (personalized evaluation) instead of the general ones: a table per run, or over seeds the client means, worst client, worst 10 %, validation and bytes."
        )
        var clients = false

        @Flag(help: "One row per run, even when runs differ only in the seed.")
        var perRun = false

        @Flag(help: "Group the runs over seeds even when every configuration has a single seed.")
        var bySeed = false

        @Option(help: "Over seeds: take the sharpness figures at this round instead of the last measurement.")
        var sharpnessRound: Int?

        @Flag(
            help:
                "Over seeds: take the sharpness figures from each run's first measurement instead of its last (e.g. the end of a constant-rate phase with --sharpness-every set to it)."
        )
        var sharpnessFirst = false

        @Option(help: "Over seeds: only these figures (columns), comma-separated, e.g. 'test acc,gen. gap,λ_max'.")
        var figures: String?

        @Option(
            help:
                "Over seeds: also a table of every configuration's figures minus this configuration's (its label in the table), with a 95 % interval and p-value (Welch's, or with --paired the paired t); repeat for several baselines."
        )
        var differenceFrom: [String] = []

        @Flag(
            help:
                "With --difference-from: pair the runs by seed (the paired t over the seeds both ran) instead of Welch's unpaired interval; right when equal seeds mean equal initialization, shards and batches."
        )
        var paired = false

        func run() throws {
            guard !runDirectories.isEmpty else { throw ValidationError("give at least one run folder") }
            let runs = try loadRuns(runDirectories)
            guard !(perRun && bySeed) else { throw ValidationError("give --per-run or --by-seed, not both") }
            var groups = try seedGroups(runs, distinctSeeds: false)
            let aggregate = !perRun && (bySeed || groups.contains(where: \.hasSeveralSeeds))
            if aggregate { groups = try seedGroups(runs, distinctSeeds: true) }
            if paired && differenceFrom.isEmpty { throw ValidationError("--paired goes with --difference-from") }
            if !differenceFrom.isEmpty && !aggregate {
                throw ValidationError("--difference-from compares groups over seeds; it does not go with --per-run")
            }
            let chosen = aggregate ? try chosenFigures() : []
            var (html, table, markdownTable) =
                aggregate ? ReportPage.seedComparison(groups, figures: chosen) : ReportPage.comparison(runs)
            for label in differenceFrom {
                guard let baseline = groups.first(where: { $0.label == label }) else {
                    throw ValidationError(
                        "--difference-from: no configuration '\(label)'; the configurations are: \(groups.map { "'\($0.label)'" }.joined(separator: ", "))"
                    )
                }
                let differences = ReportPage.seedDifferences(
                    groups, baseline: baseline, figures: chosen, paired: paired)
                let title =
                    paired
                    ? "Differences from \(label), paired by seed: mean of the per-seed differences [paired-t 95 % interval], p; ✱: the interval leaves out 0"
                    : "Differences from \(label): mean − mean over seeds [Welch 95 % interval], p; ✱: the interval leaves out 0"
                table += "\n\n\(title)\n\(differences.table)"
                markdownTable += "\n\n**\(title)**\n\n\(differences.markdown)"
            }
            // Per run, the per-client table; over seeds, the client figures in the seed table.
            if clients && !aggregate { (table, markdownTable) = ReportPage.clientComparison(runs) }
            try Data(html.utf8).write(to: URL(fileURLWithPath: output), options: .atomic)
            if let markdown { try Data((markdownTable + "\n").utf8).write(to: URL(fileURLWithPath: markdown)) }
            print(table)
            print("comparison page: \(output)")
        }

        /// The figures of the seed table: all, or those `--figures` names (in its order).
        func chosenFigures() throws -> [SeedFigure] {
            guard !(sharpnessFirst && sharpnessRound != nil) else {
                throw ValidationError("give --sharpness-round or --sharpness-first, not both")
            }
            let standard = SeedFigure.standard(
                sharpnessAt: sharpnessFirst ? .first : sharpnessRound.map { .round($0) } ?? .last)
            let all = standard + SeedFigure.clients
            guard let figures else { return clients ? SeedFigure.clients : standard }
            return try figures.split(separator: ",").map { raw in
                let name = raw.trimmingCharacters(in: .whitespaces)
                guard let figure = all.first(where: { $0.name == name }) else {
                    throw ValidationError(
                        "--figures: no figure '\(name)'; the figures are: \(all.map(\.name).joined(separator: ", "))")
                }
                return figure
            }
        }
    }
}

/// Run folders read back; a file's problem becomes a command-line error naming the file and line.
func loadRuns(_ paths: [String]) throws -> [RunFolder] {
    do { return try paths.map { try RunFolder.load(URL(fileURLWithPath: $0)) } } catch let error as ReportError {
        throw ValidationError(error.description)
    }
}

/// Runs grouped over seeds, labelled by their sweep axes when they are sweep cells; with
/// `distinctSeeds`, a group holding one seed twice is refused (it would count twice).
func seedGroups(_ runs: [RunFolder], distinctSeeds: Bool) throws -> [SeedGroup] {
    do {
        let groups = labelledBySweepAxes(try SeedGroup.group(runs))
        if distinctSeeds { for group in groups { try group.checkDistinctSeeds() } }
        return groups
    } catch let error as ReportError {
        throw ValidationError(error.description)
    }
}

/// Builds and writes `report.html` for a run folder; errors name the file and line at fault.
@discardableResult
func writeReport(_ directory: URL) throws -> String {
    let run: RunFolder
    do { run = try RunFolder.load(directory) } catch let error as ReportError {
        throw ValidationError(error.description)
    }
    let url = directory.appendingPathComponent("report.html")
    try Data(ReportPage.html(run).utf8).write(to: url, options: .atomic)
    return url.path
}
