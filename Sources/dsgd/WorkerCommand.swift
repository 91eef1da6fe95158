import Algorithms
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

    /// Heartbeats, the coordinator's silence, and the peer timeout of one worker: the timeout is
    /// about progress (heartbeats prove the peers' processes are alive, not that this worker's run
    /// moves: a lost message or a wedged peer would hang it forever).
    private func check(
        _ shell: WorkerShell, lastProgress: inout Int, since lastProgressAt: inout ContinuousClock.Instant,
        now: ContinuousClock.Instant
    ) {
        shell.watch()
        if shell.progress != lastProgress || shell.isAtStartBarrier {
            lastProgress = shell.progress
            lastProgressAt = now
            return
        }
        // Waits on the coordinator alone get 5× the timeout: it is alive (heartbeats) and may be
        // busy evaluating or measuring; its own progress check catches a stalled run.
        let timeout = (shell.peerTimeoutSeconds ?? peerTimeout) * (shell.isWaitingOnCoordinator ? 5 : 1)
        let stalled = (now - lastProgressAt) / .seconds(1)
        if stalled > timeout {
            let rank = shell.machine.rank.map(String.init) ?? "?"
            shell.fail(
                "worker \(rank): no progress for \(Int(stalled)) s (peer timeout \(timeout) s) at round \(shell.machine.round + 1), waiting for \(shell.machine.waitingOn)"
            )
        }
    }

    func run() throws {
        BLAS.useSingleThread()
        try network.checkBind()
        let context = try ZeroMQContext(maximumSockets: 64 + 8 * workersPerProcess)
        let firstRank = rank ?? Endpoints.launcherRank(offset: rankOffset).map { $0 * workersPerProcess }
        var generator = SystemRandomNumberGenerator()
        var nodes: [(shell: WorkerShell, transport: ZeroMQTransport, heartbeats: HeartbeatSender)] = []
        // The workers of this process take turns on this thread: one training scratch serves all.
        let scratch = workersPerProcess > 1 ? TrainingScratchPool() : nil
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
            machine.sharedProportionalBytes = ProcessResources.sharedProportionalBytes
            machine.trainingScratch = scratch
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
        if nodes.count > 1 && network.curveKeys == nil {
            var aliases: [String: String] = [:]
            for (index, node) in nodes.enumerated() {
                let local = "inproc://dsgd-\(getpid())-\(index)"
                try node.transport.bindInProcess(local)
                aliases[node.shell.advertisedEndpoint ?? node.transport.localEndpoint] = local
            }
            for node in nodes { node.transport.inProcessAliases = aliases }
        }
        let clock = ContinuousClock()
        var lastProgress = nodes.map { $0.shell.progress }
        var lastProgressAt = nodes.map { _ in clock.now }
        var lastCheck = clock.now
        // Which workers have messages waiting: all at first, then what the poll over every inbox
        // reports (one poll for the process, not one per worker).
        var ready = Array(nodes.indices)
        while nodes.contains(where: { $0.shell.outcome == .running }) {
            for index in ready where nodes[index].shell.outcome == .running {
                let shell = nodes[index].shell
                if nodes.count == 1 {
                    _ = shell.step(timeoutMilliseconds: 100)
                } else {
                    while shell.step(timeoutMilliseconds: 0) {}
                }
            }
            let now = clock.now
            if nodes.count == 1 || now - lastCheck >= .milliseconds(20) {
                lastCheck = now
                for (index, node) in nodes.enumerated() where node.shell.outcome == .running {
                    check(node.shell, lastProgress: &lastProgress[index], since: &lastProgressAt[index], now: now)
                }
            }
            // One worker failing fails the process: the others of its group stop with it.
            if let failed = nodes.first(where: { if case .failed = $0.shell.outcome { true } else { false } }),
                case .failed(let reason) = failed.shell.outcome
            {
                for node in nodes where node.shell.outcome == .running {
                    node.shell.fail("another worker of this process failed: \(reason)")
                }
            }
            if nodes.count > 1 {
                let running = nodes.indices.filter { nodes[$0].shell.outcome == .running }
                let found = try ZeroMQTransport.waitForInput(
                    running.map { nodes[$0].transport }, timeoutMilliseconds: 20)
                ready = found.map { running[$0] }
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
