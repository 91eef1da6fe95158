import ArgumentParser
import Foundation
import LearningCore
import Runtime
import SharedMemory
import ZeroMQTransport

struct CoordinatorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "coordinator",
        abstract: "Assign ranks, release the workers, record every round and write the run folder.")

    @OptionGroup var options: RunOptions

    @OptionGroup var network: NetworkOptions

    @Option(help: "Write the bound endpoint to this file once listening (for launchers).")
    var endpointFile: String?

    @Option(help: "On SIGTERM, read the cause of the stop from this file if it exists (launchers write it).")
    var abortReasonFile: String?

    @Option(help: "Write the run id (hexadecimal) to this file, mode 0600, once chosen (for test harnesses).")
    var runIdFile: String?

    func run() throws {
        let launchedAt = ContinuousClock.now
        fixAllocatorThresholds()
        BLAS.useSingleThread()
        try network.checkBind()
        let prepared = try prepareRun(options)
        let (configuration, directory, data, report) =
            (prepared.configuration, prepared.directory, prepared.data, prepared.report)
        // Segments of earlier runs' killed processes, started without a launcher to remove them.
        for name in SharedSegment.removeStale() { logLine("coordinator: removed the stale segment /dev/shm/\(name)") }
        let context = try ZeroMQContext(maximumSockets: 64 + 4 * configuration.workers)
        let (transport, heartbeatTransport) = try network.makeTransports(context: context, role: "coordinator")
        let heartbeats = HeartbeatSender(transport: heartbeatTransport)
        defer { heartbeats.stop() }
        var generator = SystemRandomNumberGenerator()
        let runID = generator.next() | 1
        // The run id file first: whoever waits for the endpoint file may read it at once.
        if let runIdFile {
            guard
                FileManager.default.createFile(
                    atPath: runIdFile, contents: Data(String(runID, radix: 16).utf8),
                    attributes: [.posixPermissions: 0o600])
            else { throw ValidationError("--run-id-file \(runIdFile): cannot be written") }
        }
        if let endpointFile {
            try Data((network.advertised(transport) + "\n").utf8).write(
                to: URL(fileURLWithPath: endpointFile), options: .atomic)
        }
        logLine(
            "coordinator: listening on \(transport.localEndpoint); run folder \(directory.path); data \(data.name) (\(data.source))"
        )
        installInterruptHandlers()
        // Read after the endpoint is out, so the workers start (and register: their messages wait
        // in the inbox) while this process reads, or on a cold cache inflates, the training set.
        let modelCopies = ModelCopies()
        let training = try loadTrainingSide(configuration, modelCopies: modelCopies)
        var machine = CoordinatorMachine(
            configuration: configuration, runID: runID, testSet: prepared.testSet,
            trainSubset: training.trainSubset, statisticsSet: training.statisticsSet)
        try prepared.resume(&machine)
        machine.payloadRequest = (network.payloads, network.sharedMemoryReport())
        machine.modelCopies = modelCopies
        let shell = CoordinatorShell(
            machine: machine,
            transport: transport, report: report, data: data,
            progress: ProgressLine(interactive: isatty(STDERR_FILENO) == 1) {
                writeStandardError($0)
            },
            log: logLine)
        shell.spectralGap = prepared.spectralGap
        shell.launchedAt = launchedAt
        shell.sharpness = training.sharpness
        shell.evaluations = shell.machine.evaluation.map { EvaluationRunner($0, returningModelsTo: modelCopies) }
        shell.detectsFailures = true
        shell.heartbeats = heartbeats
        shell.checkpoints = CheckpointStore(runDirectory: directory)
        prepared.resume(shell)
        while shell.outcome == .running {
            shell.step(timeoutMilliseconds: shell.receiveTimeoutMilliseconds(idle: 100))
            shell.watch()
            shell.checkpointByWallTime()
            let signalNumber = interruptSignal.load(ordering: .relaxed)
            if signalNumber != 0 {
                let cause = abortReasonFile.flatMap { try? String(contentsOfFile: $0, encoding: .utf8) }?
                    .trimmingCharacters(in: .whitespacesAndNewlines)
                shell.fail(cause.map { "stopped by the launcher: \($0)" } ?? "interrupted by signal \(signalNumber)")
            }
        }
        writeMessageTally(shell.tally, role: "coordinator")
        let summary = shell.summary
        do { try writeReport(directory) } catch { logLine("coordinator: could not write report.html: \(error)") }
        switch shell.outcome {
        case .completed:
            let accuracy = summary.finalTestAccuracy.map { String(format: "%.4f", $0) } ?? "n/a"
            logLine(
                "coordinator: completed \(summary.rounds) rounds in \(String(format: "%.1f", summary.wallSeconds)) s; final test accuracy of x̄ \(accuracy); report in \(directory.path)"
            )
        case .failed(let reason):
            logLine(
                "coordinator: run FAILED after \(summary.rounds) rounds: \(reason); partial report in \(directory.path)"
            )
            throw ExitCode(1)
        case .running:
            break
        }
    }
}
