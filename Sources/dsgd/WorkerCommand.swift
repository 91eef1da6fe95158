import ArgumentParser
import Foundation
import LearningCore
import Runtime
import ZeroMQTransport

struct WorkerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker", abstract: "One worker process: register, load its shard, train and gossip.")

    @Option(help: "The coordinator's endpoint, e.g. tcp://127.0.0.1:5555.")
    var coordinator: String

    @OptionGroup var network: NetworkOptions

    @Option(
        help:
            "Ask for this rank; default: the launcher's (OMPI_COMM_WORLD_RANK, SLURM_PROCID, minus --rank-offset), else assigned on arrival."
    )
    var rank: Int?

    @Option(help: "Subtracted from the launcher's rank (1 when the launcher's rank 0 is the coordinator).")
    var rankOffset: Int = 0

    @Option(help: "Seconds of silence (before the configuration arrives) after which the worker gives up.")
    var peerTimeout: Double = 60

    @Option(
        help: "Write the final model (de-biased under push-sum) to DIR/worker-<rank>.f32 (raw little-endian Float32).")
    var dumpParameters: String?

    func run() throws {
        BLAS.useSingleThread()
        try network.checkBind()
        let context = try ZeroMQContext()
        let (transport, heartbeatTransport) = try network.makeTransports(context: context, role: "worker")
        let heartbeats = HeartbeatSender(transport: heartbeatTransport)
        defer { heartbeats.stop() }
        var generator = SystemRandomNumberGenerator()
        var machine = WorkerMachine(
            nonce: generator.next(), host: ProcessInfo.processInfo.hostName,
            processID: ProcessInfo.processInfo.processIdentifier,
            requestedRank: rank ?? Endpoints.launcherRank(offset: rankOffset),
            peakResidentBytes: ProcessResources.peakResidentBytes, sharedMemory: network.sharedMemoryReport())
        machine.sharedResidentBytes = ProcessResources.sharedResidentBytes
        let shell = WorkerShell(machine: machine, transport: transport, log: logLine)
        shell.advertisedEndpoint = network.advertised(transport)
        shell.allowsSelfKill = true
        shell.heartbeats = heartbeats
        shell.start(coordinatorEndpoint: coordinator)
        let clock = ContinuousClock()
        // The peer timeout is about progress: heartbeats prove the peers' processes are alive,
        // not that this worker's run moves (a lost message, a wedged peer would hang it forever).
        var lastProgress = shell.machine.progress
        var lastProgressAt = clock.now
        while shell.outcome == .running {
            _ = shell.step(timeoutMilliseconds: 100)
            shell.watch()
            if shell.machine.progress != lastProgress || shell.machine.isAtStartBarrier {
                lastProgress = shell.machine.progress
                lastProgressAt = clock.now
                continue
            }
            // Waits on the coordinator alone get 5× the timeout: it is alive (heartbeats) and may be
            // busy evaluating or measuring; its own progress check catches a stalled run.
            let timeout =
                (shell.machine.configuration?.peerTimeoutSeconds ?? peerTimeout)
                * (shell.machine.isWaitingOnCoordinator ? 5 : 1)
            let stalled = (clock.now - lastProgressAt) / .seconds(1)
            if stalled > timeout {
                let rank = shell.machine.rank.map(String.init) ?? "?"
                shell.fail(
                    "worker \(rank): no progress for \(Int(stalled)) s (peer timeout \(timeout) s) at round \(shell.machine.round + 1), waiting for \(shell.machine.waitingOn)"
                )
            }
        }
        if case .failed(let reason) = shell.outcome {
            logLine("worker \(shell.machine.rank.map(String.init) ?? "?"): FAILED: \(reason)")
            throw ExitCode(1)
        }
        if let dumpParameters, let rank = shell.machine.rank {
            try FileManager.default.createDirectory(atPath: dumpParameters, withIntermediateDirectories: true)
            let data = shell.machine.model.withUnsafeBytes { Data($0) }
            try data.write(to: URL(fileURLWithPath: dumpParameters).appendingPathComponent("worker-\(rank).f32"))
        }
    }
}
