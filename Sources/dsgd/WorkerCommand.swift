import ArgumentParser
import Foundation
import LearningCore
import Runtime
import Transport
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

    @Option(
        help:
            "Run this many workers in this process, each with its own sockets and state, driven in turn on one thread (ranks --rank … --rank + K − 1 when a rank is asked for): for runs with many more workers than cores. Numbers are unchanged."
    )
    var workersPerProcess: Int = 1

    @Option(help: "Seconds of silence (before the configuration arrives) after which the worker gives up.")
    var peerTimeout: Double = 60

    @Option(
        help: "Write the final model (de-biased under push-sum) to DIR/worker-<rank>.f32 (raw little-endian Float32).")
    var dumpParameters: String?

    func validate() throws {
        guard workersPerProcess >= 1 else {
            throw ValidationError("--workers-per-process: must be at least 1, got \(workersPerProcess)")
        }
    }

    /// Where worker `index` of this process listens: the bind endpoint itself for one worker or a
    /// port the system picks; otherwise the endpoint with `-index` appended (ipc paths).
    private func bind(_ index: Int) -> String {
        workersPerProcess == 1 || network.bind.hasSuffix(":*") ? network.bind : network.bind + "-\(index)"
    }

    func run() throws {
        BLAS.useSingleThread()
        try network.checkBind()
        let context = try ZeroMQContext()
        let firstRank = rank ?? Endpoints.launcherRank(offset: rankOffset).map { $0 * workersPerProcess }
        var generator = SystemRandomNumberGenerator()
        var nodes: [(shell: WorkerShell, transport: ZeroMQTransport, heartbeats: HeartbeatSender)] = []
        defer { for node in nodes { node.heartbeats.stop() } }
        for index in 0..<workersPerProcess {
            var options = network
            options.bind = bind(index)
            let (transport, heartbeatTransport) = try options.makeTransports(context: context, role: "worker")
            let heartbeats = HeartbeatSender(transport: heartbeatTransport)
            var machine = WorkerMachine(
                nonce: generator.next(), host: ProcessInfo.processInfo.hostName,
                processID: ProcessInfo.processInfo.processIdentifier, requestedRank: firstRank.map { $0 + index },
                peakResidentBytes: ProcessResources.peakResidentBytes, sharedMemory: network.sharedMemoryReport())
            machine.sharedResidentBytes = ProcessResources.sharedResidentBytes
            let shell = WorkerShell(machine: machine, transport: transport, log: logLine)
            shell.advertisedEndpoint = options.advertised(transport)
            // Killing itself (an injected fault) would take the other workers of the process along.
            shell.allowsSelfKill = workersPerProcess == 1
            shell.heartbeats = heartbeats
            shell.start(coordinatorEndpoint: coordinator)
            nodes.append((shell, transport, heartbeats))
        }
        // Workers of this process reach each other in process (not with CURVE: its handshake is
        // the point of the keys, whatever the path).
        if nodes.count > 1 && network.curveKeys == nil && ProcessInfo.processInfo.environment["DSGD_NO_INPROC"] == nil {
            var aliases: [String: String] = [:]
            for (index, node) in nodes.enumerated() {
                let local = "inproc://dsgd-\(getpid())-\(index)"
                try node.transport.bindInProcess(local)
                aliases[node.shell.advertisedEndpoint ?? node.transport.localEndpoint] = local
            }
            for node in nodes { node.transport.inProcessAliases = aliases }
        }
        let clock = ContinuousClock()
        // The peer timeout is about progress: heartbeats prove the peers' processes are alive,
        // not that this worker's run moves (a lost message, a wedged peer would hang it forever).
        var lastProgress = nodes.map { $0.shell.machine.progress }
        var lastProgressAt = nodes.map { _ in clock.now }
        while nodes.contains(where: { $0.shell.outcome == .running }) {
            var moved = false
            for (index, node) in nodes.enumerated() where node.shell.outcome == .running {
                let shell = node.shell
                if nodes.count == 1 {
                    moved = shell.step(timeoutMilliseconds: 100)
                } else {
                    while shell.step(timeoutMilliseconds: 0) { moved = true }
                }
                shell.watch()
                if shell.machine.progress != lastProgress[index] || shell.machine.isAtStartBarrier {
                    lastProgress[index] = shell.machine.progress
                    lastProgressAt[index] = clock.now
                    continue
                }
                // Waits on the coordinator alone get 5× the timeout: it is alive (heartbeats) and
                // may be busy evaluating or measuring; its own progress check catches a stalled run.
                let timeout =
                    (shell.machine.configuration?.peerTimeoutSeconds ?? peerTimeout)
                    * (shell.machine.isWaitingOnCoordinator ? 5 : 1)
                let stalled = (clock.now - lastProgressAt[index]) / .seconds(1)
                if stalled > timeout {
                    let rank = shell.machine.rank.map(String.init) ?? "?"
                    shell.fail(
                        "worker \(rank): no progress for \(Int(stalled)) s (peer timeout \(timeout) s) at round \(shell.machine.round + 1), waiting for \(shell.machine.waitingOn)"
                    )
                }
            }
            if nodes.count > 1 && !moved {
                let waiting = nodes.filter { $0.shell.outcome == .running }.map(\.transport)
                if !waiting.isEmpty { _ = try ZeroMQTransport.waitForInput(waiting, timeoutMilliseconds: 100) }
            }
            // One worker failing fails the process: the others of its group stop with it.
            if let failed = nodes.first(where: { if case .failed = $0.shell.outcome { true } else { false } }),
                case .failed(let reason) = failed.shell.outcome
            {
                for node in nodes where node.shell.outcome == .running {
                    node.shell.fail("another worker of this process failed: \(reason)")
                }
            }
        }
        writeMessageTally(nodes.map(\.shell.tally).reduce(MessageTally(), +), role: "worker")
        var failed = false
        for node in nodes {
            if case .failed(let reason) = node.shell.outcome {
                logLine("worker \(node.shell.machine.rank.map(String.init) ?? "?"): FAILED: \(reason)")
                failed = true
            }
        }
        if failed { throw ExitCode(1) }
        if let dumpParameters {
            try FileManager.default.createDirectory(atPath: dumpParameters, withIntermediateDirectories: true)
            for node in nodes {
                guard let rank = node.shell.machine.rank else { continue }
                let data = node.shell.machine.model.withUnsafeBytes { Data($0) }
                try data.write(to: URL(fileURLWithPath: dumpParameters).appendingPathComponent("worker-\(rank).f32"))
            }
        }
    }
}
