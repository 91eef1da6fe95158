import ArgumentParser
import Foundation
import LearningCore
import Runtime

struct SimulateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "simulate",
        abstract: "Run the same workers and coordinator in one process over an in-memory transport.")

    @OptionGroup var options: RunOptions

    @Option(help: "Write every worker's final parameters to DIR/worker-<rank>.f32.")
    var dumpParameters: String?

    func run() throws {
        BLAS.useSingleThread()
        let prepared = try prepareRun(options)
        let training = try loadTrainingSide(prepared.configuration)
        let (configuration, directory, data) = (prepared.configuration, prepared.directory, prepared.data)
        logLine(
            "simulate: \(configuration.workers) workers in one process; run folder \(directory.path); data \(data.name)"
        )
        var generator = SystemRandomNumberGenerator()
        let (coordinator, workers) = Simulation.run(
            configuration: configuration, runID: generator.next() | 1, testSet: prepared.testSet,
            report: prepared.report, data: data,
            progress: ProgressLine(interactive: isatty(STDERR_FILENO) == 1) {
                writeStandardError($0)
            },
            log: logLine, spectralGap: prepared.spectralGap, trainSubset: training.trainSubset,
            sharpness: training.sharpness, statisticsSet: training.statisticsSet,
            checkpoints: CheckpointStore(runDirectory: directory), resume: prepared.resumePoint)
        if let dumpParameters {
            try FileManager.default.createDirectory(atPath: dumpParameters, withIntermediateDirectories: true)
            for worker in workers {
                guard let rank = worker.machine.rank else { continue }
                let data = worker.machine.model.withUnsafeBytes { Data($0) }
                try data.write(to: URL(fileURLWithPath: dumpParameters).appendingPathComponent("worker-\(rank).f32"))
            }
        }
        do { try writeReport(directory) } catch { logLine("simulate: could not write report.html: \(error)") }
        if case .failed(let reason) = coordinator.outcome {
            logLine("simulate: run FAILED: \(reason)")
            throw ExitCode(1)
        }
        let summary = coordinator.summary
        logLine(
            "simulate: completed \(summary.rounds) rounds in \(String(format: "%.1f", summary.wallSeconds)) s; final test accuracy \(summary.finalTestAccuracy.map { String(format: "%.4f", $0) } ?? "n/a"); report in \(directory.path)"
        )
    }
}
