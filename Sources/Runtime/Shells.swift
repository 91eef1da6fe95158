import Datasets
import Diagnostics
import Foundation
import LearningCore
import Transport

/// How a node's run ended.
public enum NodeOutcome: Equatable, Sendable {
    case running
    case completed
    case failed(String)
}

/// Runs a `WorkerMachine` over a `Transport`: performs its directives (sends, connects, data
/// loading, the local-training turn) and feeds it received messages.
public final class WorkerShell {
    public private(set) var machine: WorkerMachine
    public let transport: any Transport
    public private(set) var outcome = NodeOutcome.running
    private let log: (String) -> Void
    private let loadShard: (Int, RunConfiguration) throws -> Dataset
    private let loadClientTest: (Int, RunConfiguration) throws -> Dataset
    private let loadClientValidation: (Int, RunConfiguration) throws -> Dataset

    public init(
        machine: WorkerMachine, transport: any Transport, log: @escaping (String) -> Void,
        loadShard: @escaping (Int, RunConfiguration) throws -> Dataset = { rank, configuration in
            try DataLoader.loadShard(
                configuration.data, partition: configuration.partition, workers: configuration.workers,
                seed: configuration.seed, rank: rank, trainExamples: configuration.trainExamples,
                validationFraction: configuration.clientValidationFraction)
        },
        loadClientTest: @escaping (Int, RunConfiguration) throws -> Dataset = { rank, configuration in
            try DataLoader.loadClientTestSplit(configuration, rank: rank)
        },
        loadClientValidation: @escaping (Int, RunConfiguration) throws -> Dataset = { rank, configuration in
            try DataLoader.loadClientValidationSplit(configuration, rank: rank)
        }
    ) {
        self.machine = machine
        self.transport = transport
        self.log = log
        self.loadShard = loadShard
        self.machine.payloadMaker = { [unowned transport] in transport.makePayload($0, round: $1, readers: $2) }
        self.loadClientTest = loadClientTest
        self.loadClientValidation = loadClientValidation
    }

    /// The inbox endpoint other processes should connect to (defaults to the bound one).
    public var advertisedEndpoint: String?

    /// Connects to the coordinator and registers.
    public func start(coordinatorEndpoint: String) {
        self.coordinatorEndpoint = coordinatorEndpoint
        // Until the assignment names the run, no payload of any size is accepted.
        transport.admit(.joining)
        do {
            try transport.connect(.coordinator, endpoint: coordinatorEndpoint)
        } catch {
            outcome = .failed("cannot connect to the coordinator at \(coordinatorEndpoint): \(error)")
            return
        }
        perform(machine.onStart(localEndpoint: advertisedEndpoint ?? transport.localEndpoint))
    }

    /// Handles at most one incoming message; returns whether one arrived.
    @discardableResult
    public func step(timeoutMilliseconds: Int) -> Bool {
        guard outcome == .running else { return false }
        do {
            switch try transport.receive(timeoutMilliseconds: timeoutMilliseconds) {
            case .none: return false
            case .rejected(let error):
                tally.undecodable += 1
                log("worker \(machine.rank.map(String.init) ?? "?"): rejected: \(error)")
                return true
            case .envelope(let envelope):
                if envelope.header.sender == -1 && settings != nil { lastFromCoordinator = clock.now }
                tally.noteReceived(envelope.header.kind)
                let rejectedBefore = machine.rejectedMessages
                let directives = machine.onEnvelope(envelope)
                if machine.rejectedMessages > rejectedBefore { tally.noteRejected(envelope.header.kind) }
                if envelope.header.kind == .acknowledge {
                    // Before the directives: the round they may begin publishes into a freed slot.
                    transport.releasePayloads(through: inPlace(&machine) { $0.recordedRounds })
                }
                if settings == nil, let configuration = machine.configuration {
                    settings = RunSettings(configuration)
                    transport.admit(
                        .run(
                            runID: machine.runID, modelSize: Network(spec: configuration.model).parameterCount,
                            vectorsPerMessage: configuration.algorithm.ruleType.vectorsPerMessage))
                }
                perform(directives)
                return true
            }
        } catch {
            fail("receive failed: \(error)")
            return false
        }
    }

    /// Reports a failure to the coordinator (best effort) and stops.
    public func fail(_ reason: String) {
        guard outcome == .running else { return }
        outcome = .failed(reason)
        try? send(machine.abortMessage(reason: reason), to: .coordinator)
    }

    /// This node's messages by kind (see `MessageTally`).
    public private(set) var tally = MessageTally()

    /// Every send goes through here: it is counted once the transport took it.
    private func send(_ envelope: Envelope, to peer: Peer) throws {
        try transport.send(envelope, to: peer)
        tally.noteSent(envelope.header.kind)
    }

    /// What the shell reads of the run's configuration for every message and turn, kept once the
    /// assignment came (none of it changes after; reading `machine.configuration` each time copied
    /// the whole configuration, a measurable cost with a hundred workers to a process).
    private struct RunSettings {
        var faults: [Fault]
        var delaysLinks: Bool
        var heartbeatIntervalSeconds: Double
        var failureTimeoutSeconds: Double
        var peerTimeoutSeconds: Double

        init(_ configuration: RunConfiguration) {
            faults = configuration.faults
            delaysLinks = faults.contains { if case .delayLink = $0 { true } else { false } }
            heartbeatIntervalSeconds = configuration.heartbeatIntervalSeconds
            failureTimeoutSeconds = configuration.failureTimeoutSeconds
            peerTimeoutSeconds = configuration.peerTimeoutSeconds
        }
    }
    private var settings: RunSettings?

    /// The machine's figures a process's loop watches after every message, read in place: a
    /// computed property of `machine` (another module's struct) read from this class's stored
    /// property copies the whole machine first, retaining and releasing every array in it (`perf`:
    /// 1.8 % of a complete graph's machine time), while one read through `inout` borrows it.
    public var progress: Int { inPlace(&machine) { $0.progress } }
    public var isAtStartBarrier: Bool { inPlace(&machine) { $0.isAtStartBarrier } }
    public var isWaitingOnCoordinator: Bool { inPlace(&machine) { $0.isWaitingOnCoordinator } }
    /// The run's peer timeout once assigned.
    public var peerTimeoutSeconds: Double? { settings?.peerTimeoutSeconds }

    private let clock = ContinuousClock()
    private var lastHeartbeat: ContinuousClock.Instant?
    private var lastFromCoordinator: ContinuousClock.Instant?
    private var coordinatorEndpoint: String?
    /// Sends this worker's heartbeats from a thread of its own (processes); nil: `watch` sends them.
    public var heartbeats: HeartbeatSender?
    private var heartbeatsConfigured = false
    /// Set by a worker process: a `kill` fault may end it with SIGKILL (in simulation the worker fails).
    public var allowsSelfKill = false
    private var delayedSends: [(due: ContinuousClock.Instant, envelope: Envelope, peer: Peer)] = []

    /// Starts the heartbeat thread's beat once the assignment gives the run id, rank and interval
    /// (the beat never changes after).
    private func configureHeartbeats() {
        guard !heartbeatsConfigured, let heartbeats, let coordinatorEndpoint, let configuration = machine.configuration
        else { return }
        settings = settings ?? RunSettings(configuration)
        heartbeatsConfigured = true
        heartbeats.update(
            beat: machine.heartbeatMessage(), peers: [.coordinator: coordinatorEndpoint],
            intervalSeconds: configuration.heartbeatIntervalSeconds)
    }

    /// Faults that apply to this worker's next round's local steps.
    private func injectBeforeTraining() {
        guard let settings, !settings.faults.isEmpty, let rank = machine.rank else { return }
        let round = machine.round + 1
        for fault in settings.faults {
            switch fault {
            case .straggler(let worker, let seconds, let rounds) where worker == rank && rounds.contains(round):
                Thread.sleep(forTimeInterval: seconds)
            case .kill(let worker, let at) where worker == rank && at == round:
                if allowsSelfKill { kill(getpid(), SIGKILL) }
                fail("killed by fault injection before round \(round)")
            default:
                break
            }
        }
    }

    /// The delay a `delayLink` fault puts on this message, if any.
    private func linkDelay(_ envelope: Envelope, to peer: Peer) -> Double? {
        guard let settings, settings.delaysLinks, envelope.header.kind == .parameters, case .worker(let target) = peer,
            let rank = machine.rank
        else { return nil }
        let round = Int(envelope.header.round) + 1
        for case .delayLink(let u, let v, let seconds, let rounds) in settings.faults
        where u == rank && v == target && rounds.contains(round) {
            return seconds
        }
        return nil
    }

    public var hasDelayedSends: Bool { !delayedSends.isEmpty }

    /// Sends the delayed messages that are due (all of them with `force`, as the simulation does:
    /// it has no wall clock, so a delay there only reorders delivery).
    public func flushDelayedSends(force: Bool = false) {
        let now = clock.now
        while let first = delayedSends.first, force || first.due <= now {
            delayedSends.removeFirst()
            do { try send(first.envelope, to: first.peer) } catch {
                fail("send to \(first.peer) failed: \(error)")
            }
        }
    }

    /// Sends a heartbeat when one is due and gives up when the coordinator has been silent longer
    /// than the failure timeout; call between steps (processes only, not in simulation).
    public func watch() {
        flushDelayedSends()
        guard outcome == .running, let configuration = settings else { return }
        var now = clock.now
        if heartbeats != nil {
            configureHeartbeats()
        } else if lastHeartbeat.map({ (now - $0) / .seconds(1) >= configuration.heartbeatIntervalSeconds }) ?? true {
            lastHeartbeat = now
            try? send(machine.heartbeatMessage(), to: .coordinator)
        }
        if lastFromCoordinator == nil { lastFromCoordinator = now }
        if (now - lastFromCoordinator!) / .seconds(1) > configuration.failureTimeoutSeconds {
            // This worker may itself have been busy: read what has arrived before judging.
            while outcome == .running, step(timeoutMilliseconds: 0) {}
            now = clock.now
        }
        let silent = (now - (lastFromCoordinator ?? now)) / .seconds(1)
        if outcome == .running, silent > configuration.failureTimeoutSeconds {
            fail(
                "the coordinator sent nothing for \(String(format: "%.1f", silent)) s (failure timeout \(configuration.failureTimeoutSeconds) s)"
            )
        }
    }

    private func perform(_ directives: [WorkerDirective]) {
        var queue = directives[...]
        while let directive = queue.popFirst(), outcome == .running {
            switch directive {
            case .connect(let peer, let endpoint):
                do { try transport.connect(peer, endpoint: endpoint) } catch {
                    fail("cannot connect to \(peer) at \(endpoint): \(error)")
                }
            case .send(let envelope, let peer):
                if let delay = linkDelay(envelope, to: peer) {
                    delayedSends.append((clock.now + .milliseconds(Int(delay * 1000)), envelope, peer))
                    delayedSends.sort { $0.due < $1.due }
                    continue
                }
                do { try send(envelope, to: peer) } catch { fail("send to \(peer) failed: \(error)") }
            case .loadShard(let rank, let configuration):
                // Heartbeats start before the (possibly long) load, so the coordinator can tell a
                // worker that died while loading from one that is still loading.
                configureHeartbeats()
                if configuration.faults.contains(.kill(worker: rank, round: 0)) {
                    if allowsSelfKill { kill(getpid(), SIGKILL) }
                    fail("killed by fault injection while loading its data")
                    break
                }
                do {
                    let shard = try loadShard(rank, configuration).featuresOnHugePages()
                    let clientTest = configuration.clientTestSize > 0 ? try loadClientTest(rank, configuration) : nil
                    let clientValidation =
                        configuration.clientValidationFraction > 0 ? try loadClientValidation(rank, configuration) : nil
                    queue =
                        machine.onShardLoaded(shard, clientTest: clientTest, clientValidation: clientValidation)[...]
                        + queue
                } catch {
                    fail("cannot load data: \(error)")
                }
            case .shareModels(let plan, let runID, let rank):
                do { try transport.shareModels(plan, runID: runID, rank: rank) } catch {
                    fail("cannot pass payloads through shared memory: \(error)")
                }
            case .trainLocally:
                injectBeforeTraining()
                guard outcome == .running else { break }
                queue = machine.onTrainTurn()[...] + queue
            case .log(let message):
                log(message)
            case .finish:
                outcome = .completed
            case .fail(let reason):
                fail(reason)
            }
        }
    }
}

/// Runs a `CoordinatorMachine` over a `Transport`, writes the run folder and shows progress.
public final class CoordinatorShell {
    public private(set) var machine: CoordinatorMachine
    public let transport: any Transport
    public private(set) var outcome = NodeOutcome.running
    public let report: RunReport?
    /// The most recent round records, at most `retainedRecords` (the run folder has them all; the
    /// summary keeps running figures, so a long run's memory does not grow with its rounds).
    public var records: [RoundRecord] { Array(recentRecords.suffix(Self.retainedRecords)) }
    /// Up to twice `retainedRecords`, trimmed in batches: dropping the oldest every round would
    /// move the whole array every round.
    private var recentRecords: [RoundRecord] = []
    public static let retainedRecords = 1_000
    public static let retainedSharpnessRecords = 64
    private var recordedRounds = 0
    private var lastEvaluated: RoundRecord?
    private var lastWithConsensus: RoundRecord?
    private var lastClientRecord: RoundRecord?
    private var bestClientRecord: RoundRecord?
    private let log: (String) -> Void
    private let progress: ProgressLine?
    private let clock = ContinuousClock()
    private var startedAt: ContinuousClock.Instant?
    private var finishedAt: ContinuousClock.Instant?
    private var lastProgressAt: ContinuousClock.Instant
    private var lastProgress = -1
    private let data: DataDescription?
    private var summaries: [WorkerSummary] = []
    /// Recorded in summary.json (computed by the caller, which may skip it for huge graphs).
    public var spectralGap: Double?
    /// When the coordinator's process began its work: summary.json records the time from there to
    /// the start barrier (`startup_seconds`).
    public var launchedAt: ContinuousClock.Instant?
    /// Measures curvature and sharpness off the message loop, when configured.
    public var sharpness: SharpnessRunner?
    /// Evaluates x̄ and the workers' models off the message loop (processes); nil: in line, when
    /// the directive comes (simulation, where there is no loop to keep going).
    public var evaluations: EvaluationRunner?
    /// Heartbeats and failure detection need real time: on for processes, off in simulation.
    public var detectsFailures = false
    private var lastHeard: [Int: ContinuousClock.Instant] = [:]
    /// How long a worker may be silent while the workers set up (from the assignments to the start
    /// barrier): the failure timeout, or more for a large cluster.
    /// Every worker decodes its assignment (which names all n workers), starts its heartbeats and
    /// loads its data at the same moment, so on one host the n processes, the coordinator and its
    /// I/O thread share the cores: with 256 worker processes on 2 cores live workers went unheard
    /// for over 5 s and were declared dead before the first round. Once running, the failure
    /// timeout alone applies.
    private func startAllowance(_ configuration: RunConfiguration) -> Double {
        configuration.failureTimeoutSeconds * max(1, Double(configuration.workers) / 64)
    }
    private var lastHeartbeat: ContinuousClock.Instant?
    private var lastWatch: ContinuousClock.Instant?
    private var workerEndpoints: [Int: String] = [:]
    /// Sends the coordinator's heartbeats from a thread of its own (processes); nil: `watch` sends them.
    public var heartbeats: HeartbeatSender?
    private var heartbeatTargets: [Int] = []
    /// Faults injected on purpose (recorded in the summary).
    public var faultEvents: [String] = []
    /// How payloads travel in this run (recorded in config.json and summary.json).
    public private(set) var payloadDecision: PayloadDecision?
    public private(set) var sharpnessRecords: [SharpnessRecord] = []
    /// This node's messages by kind (see `MessageTally`).
    public private(set) var tally = MessageTally()

    /// Every send goes through here: it is counted once the transport took it.
    private func send(_ envelope: Envelope, to peer: Peer) throws {
        try transport.send(envelope, to: peer)
        tally.noteSent(envelope.header.kind)
    }

    /// Where checkpoints go (nil: none are written; the workers are let go on all the same).
    public var checkpoints: CheckpointStore?
    private var lastCheckpointAt: ContinuousClock.Instant?
    /// Wall time of the run before it was resumed (its records' clock goes on from there).
    private var elapsedBeforeResume = 0.0
    private var checkpointEvents: [String] = []

    public init(
        machine: CoordinatorMachine, transport: any Transport, report: RunReport?, data: DataDescription?,
        progress: ProgressLine?, log: @escaping (String) -> Void
    ) {
        self.machine = machine
        self.transport = transport
        self.machine.payloadMaker = { [unowned transport] in transport.makePayload($0, round: $1) }
        self.report = report
        self.data = data
        self.progress = progress
        self.log = log
        lastProgressAt = clock.now
        faultEvents = machine.configuration.faults.map { "fault injected: \($0)" }
        transport.admit(
            .run(
                runID: machine.runID, modelSize: Network(spec: machine.configuration.model).parameterCount,
                vectorsPerMessage: machine.configuration.algorithm.ruleType.vectorsPerMessage))
    }

    /// Handles at most one incoming message; declares the run failed after the peer timeout.
    @discardableResult
    public func step(timeoutMilliseconds: Int) -> Bool {
        guard outcome == .running else { return false }
        defer {
            collectEvaluations()
            collectSharpness()
        }
        do {
            defer { checkProgress() }
            switch try transport.receive(timeoutMilliseconds: timeoutMilliseconds) {
            case .none:
                return false
            case .rejected(let error):
                tally.undecodable += 1
                log("coordinator: rejected: \(error)")
                return true
            case .envelope(let envelope):
                if envelope.header.runID == machine.runID, envelope.header.sender >= 0 {
                    lastHeard[Int(envelope.header.sender)] = clock.now
                }
                tally.noteReceived(envelope.header.kind)
                let rejectedBefore = machine.rejectedMessages
                let directives = machine.onEnvelope(envelope)
                if machine.rejectedMessages > rejectedBefore { tally.noteRejected(envelope.header.kind) }
                perform(directives)
                return true
            }
        } catch {
            fail("receive failed: \(error)")
            return false
        }
    }

    /// Fails the run when it has not moved for 1.5 × the peer timeout: heartbeats prove a process
    /// is alive, not that the run advances (a lost message, a wedged peer). Workers give up after
    /// the peer timeout itself, naming the round and the neighbours they wait for, which the
    /// coordinator cannot see; its own, later check is the backstop when no worker can tell.
    private func checkProgress() {
        guard outcome == .running else { return }
        // While the workers load their data, heartbeats (failure detection) judge them: a large
        // data set on many workers may take longer than the peer timeout to load.
        let progress = inPlace(&machine) { $0.progress }
        if progress != lastProgress || inPlace(&machine, { $0.isLoading }) {
            lastProgress = progress
            lastProgressAt = clock.now
            return
        }
        let stalled = (clock.now - lastProgressAt) / .seconds(1)
        if stalled > 1.5 * machine.configuration.peerTimeoutSeconds { perform(machine.onSilence(seconds: stalled)) }
    }

    /// Sends heartbeats and declares silent workers dead; call between steps. Its scans are over
    /// every live worker, so they run at most every 20 ms however often it is called (once per
    /// message would make a round cost the square of the workers).
    public func watch() {
        guard detectsFailures, outcome == .running, !machine.alive.isEmpty else { return }
        var now = clock.now
        if let lastWatch, now - lastWatch < .milliseconds(20) { return }
        lastWatch = now
        let configuration = machine.configuration
        let beat = Envelope(header: MessageHeader(kind: .heartbeat, runID: machine.runID, sender: -1))
        if let heartbeats {
            // Only when the live, connected workers change (registration, a removal).
            let targets = machine.alive.filter { workerEndpoints[$0] != nil }
            if targets != heartbeatTargets {
                heartbeatTargets = targets
                let peers = Dictionary(uniqueKeysWithValues: targets.map { (Peer.worker($0), workerEndpoints[$0]!) })
                heartbeats.update(beat: beat, peers: peers, intervalSeconds: configuration.heartbeatIntervalSeconds)
            }
        } else if lastHeartbeat.map({ (now - $0) / .seconds(1) >= configuration.heartbeatIntervalSeconds }) ?? true {
            lastHeartbeat = now
            for rank in machine.alive { try? send(beat, to: .worker(rank)) }
        }
        // Detection starts once the workers have their assignments: they heartbeat from a thread
        // of their own while loading data, so a worker that dies before the barrier is found too.
        guard machine.isRunning || machine.isLoading else { return }
        let overdue = machine.alive.contains { rank in
            lastHeard[rank].map { (now - $0) / .seconds(1) > configuration.failureTimeoutSeconds } ?? false
        }
        if overdue {
            // The coordinator may itself have been busy: read what has arrived before judging.
            while outcome == .running, step(timeoutMilliseconds: 0) {}
            now = clock.now
        }
        for rank in machine.alive {
            let heard = lastHeard[rank] ?? now
            if lastHeard[rank] == nil { lastHeard[rank] = now }
            let silent = (now - heard) / .seconds(1)
            // Past the barrier every worker has been heard (its readiness): the failure timeout.
            let limit = machine.isLoading ? startAllowance(configuration) : configuration.failureTimeoutSeconds
            if silent > limit {
                lastHeard[rank] = now
                perform(machine.onWorkerSilent(rank, seconds: silent, limit: limit))
            }
        }
    }

    /// Marks the run failed, tells the workers, and writes the summary.
    public func fail(_ reason: String) {
        guard outcome == .running else { return }
        outcome = .failed(reason)
        finishedAt = clock.now
        for case .send(let envelope, let peer) in machine.abortMessages(reason: reason) {
            try? send(envelope, to: peer)
        }
        progress?.finish()
        evaluations?.close(cancel: true)
        evaluations = nil
        finishSharpness(cancel: true)
        writeSummary()
    }

    public var elapsedSeconds: Double {
        guard let startedAt else { return elapsedBeforeResume }
        return elapsedBeforeResume + ((finishedAt ?? clock.now) - startedAt) / .seconds(1)
    }

    /// A resumed run: the records and sharpness measurements up to the checkpoint (as the run
    /// folder holds them), so the summary's running figures and the clock go on from there.
    public func resume(records previous: [RoundRecord], sharpness: [SharpnessRecord], event: String) {
        for record in previous { note(record) }
        sharpnessRecords = sharpness
        elapsedBeforeResume = previous.last?.elapsedSeconds ?? 0
        checkpointEvents.append(event)
    }

    private func note(_ record: RoundRecord) {
        recentRecords.append(record)
        if recentRecords.count >= 2 * Self.retainedRecords {
            recentRecords.removeFirst(recentRecords.count - Self.retainedRecords)
        }
        recordedRounds += 1
        if record.testAccuracy != nil { lastEvaluated = record }
        if record.consensusDistanceSquared != nil { lastWithConsensus = record }
        if let mean = record.clientAccuracyMean {
            lastClientRecord = record
            if mean > bestClientRecord?.clientAccuracyMean ?? -.infinity { bestClientRecord = record }
        }
    }

    /// The wall-time checkpoint trigger; call between steps.
    public func checkpointByWallTime() {
        guard outcome == .running, machine.isRunning, checkpoints != nil,
            let seconds = machine.configuration.checkpoints?.everySeconds
        else { return }
        let since = lastCheckpointAt ?? startedAt ?? clock.now
        guard (clock.now - since) / .seconds(1) >= seconds, !machine.checkpointPending else { return }
        perform(machine.requestCheckpoint())
    }

    /// Writes a checkpoint after the sharpness measurements queued before it (so the run folder
    /// holds every measurement up to its round), then lets the workers go on.
    private func writeCheckpoint(_ snapshot: CheckpointSnapshot) {
        if let sharpness {
            sharpness.waitUntilIdle()
            collectSharpness()
        }
        if let checkpoints {
            let started = clock.now
            do {
                try checkpoints.write(snapshot, configuration: machine.configuration)
                let size = snapshot.workerStates.reduce(snapshot.coordinatorState.count) { $0 + $1.count }
                log(
                    "coordinator: checkpoint of round \(snapshot.round) written (\(size / 1024) KiB, \(String(format: "%.2f", (clock.now - started) / .seconds(1))) s)"
                )
            } catch {
                let event = "round \(snapshot.round): the checkpoint was not written: \(error)"
                checkpointEvents.append(event)
                log("coordinator: " + event)
            }
        }
        lastCheckpointAt = clock.now
        perform(machine.onCheckpointWritten(round: snapshot.round))
    }

    private func perform(_ directives: [CoordinatorDirective]) {
        // Evaluations run here (no background runner) are handed back after the other directives:
        // a record released in the same list (an earlier round's) is written before the evaluated one.
        var evaluated: [EvaluationResult] = []
        defer { for result in evaluated where outcome == .running { perform(machine.onEvaluation(result)) } }
        for directive in directives where outcome == .running {
            switch directive {
            case .connect(let peer, let endpoint):
                if case .worker(let rank) = peer { workerEndpoints[rank] = endpoint }
                do { try transport.connect(peer, endpoint: endpoint) } catch {
                    fail("cannot connect to \(peer) at \(endpoint): \(error)")
                }
            case .send(let envelope, let peer):
                do { try send(envelope, to: peer) } catch { fail("send to \(peer) failed: \(error)") }
            case .payloads(let decision):
                payloadDecision = decision
                if let plan = decision.plan {
                    do { try transport.shareModels(plan, runID: machine.runID, rank: nil) } catch {
                        fail("cannot pass payloads through shared memory: \(error)")
                        break
                    }
                    log(
                        "coordinator: payloads through shared memory (\(plan.slotCount) model slots, \(plan.segmentBytes / 1_048_576) MiB per process)"
                    )
                } else if let reason = decision.reason {
                    log("coordinator: payloads as ZeroMQ frames: \(reason)")
                }
                do { try report?.notePayloads(decision) } catch {
                    log("cannot note the payloads in config.json: \(error)")
                }
            case .started:
                startedAt = clock.now
            case .record(var record):
                record.elapsedSeconds = elapsedSeconds
                note(record)
                // Every 500 rounds, hand the allocator's free pages back to the system: a round's
                // temporaries (tens of MB with many models) otherwise leave the resident set creeping.
                if record.round % 500 == 0 { releaseFreeMemory() }
                do { try report?.append(record) } catch { fail("cannot write the round report: \(error)") }
                progress?.update(record: record, elapsed: elapsedSeconds, totalRounds: machine.configuration.rounds)
            case .log(let message):
                log(message)
            case .complete(let summaries):
                self.summaries = summaries
                outcome = .completed
                finishedAt = clock.now
                progress?.finish()
                evaluations?.close()
                evaluations = nil
                finishSharpness(cancel: false)
                writeSummary()
            case .fail(let reason):
                fail(reason)
            case .measureSharpness(let job):
                sharpness?.submit(job)
            case .checkpoint(let snapshot):
                writeCheckpoint(snapshot)
            case .evaluate(let job):
                if let evaluations {
                    evaluations.submit(job)
                } else if let evaluation = machine.evaluation {
                    evaluated.append(evaluation.run(job))
                }
            }
        }
    }

    /// How long a step may wait for a message: `idle` normally, but a few milliseconds while an
    /// evaluation or a sharpness measurement is under way or waiting to be collected (the
    /// background threads do not wake the message loop: at the end of a run, with the workers
    /// silent, the last evaluation otherwise waited out the whole timeout, 100 ms, before its
    /// record was written).
    public func receiveTimeoutMilliseconds(idle: Int) -> Int {
        (evaluations?.outstanding ?? 0) > 0 || (sharpness?.outstanding ?? 0) > 0 ? min(idle, 2) : idle
    }

    /// Hands the finished evaluations to the machine (their records are then written).
    private func collectEvaluations() {
        guard let evaluations, outcome == .running else { return }
        for result in evaluations.drain() { perform(machine.onEvaluation(result)) }
    }

    private func collectSharpness() {
        guard let sharpness else { return }
        for record in sharpness.drain() {
            sharpnessRecords.append(record)
            // The run folder has them all; memory keeps the latest (a long run's would grow).
            if sharpnessRecords.count > Self.retainedSharpnessRecords {
                sharpnessRecords.removeFirst(sharpnessRecords.count - Self.retainedSharpnessRecords)
            }
            do { try report?.appendSharpness(record) } catch { log("cannot write sharpness.jsonl: \(error)") }
        }
    }

    /// Lets queued sharpness measurements finish (or drops them on failure) and records them.
    private func finishSharpness(cancel: Bool) {
        guard let sharpness else { return }
        if sharpness.pending > 0 && !cancel {
            log("coordinator: finishing \(sharpness.pending) sharpness measurement(s)")
        }
        sharpness.close(cancel: cancel)
        collectSharpness()
        self.sharpness = nil
    }

    public var summary: RunSummary {
        let configuration = machine.configuration
        let rounds = recordedRounds
        let wall = elapsedSeconds
        let lastClient = lastClientRecord
        let bestClient = bestClientRecord
        var status = "completed"
        var reason: String?
        if case .failed(let why) = outcome {
            status = "failed"
            reason = why
        }
        let runID = String(machine.runID, radix: 16)
        let events = machine.events + checkpointEvents + faultEvents + (report?.nonFiniteEvents ?? [])
        var summary = RunSummary(
            status: status, reason: reason, runName: configuration.runName,
            runID: String(repeating: "0", count: 16 - runID.count) + runID, rounds: rounds,
            roundsPlanned: configuration.rounds, workers: configuration.workers, topology: configuration.topology.name,
            algorithm: configuration.algorithm.rawValue, data: data,
            finalTestAccuracy: lastEvaluated?.testAccuracy,
            finalTestLoss: lastEvaluated?.testLoss, finalTrainLoss: recentRecords.last?.trainLoss,
            finalConsensusDistanceSquared: lastWithConsensus?.consensusDistanceSquared,
            wallSeconds: wall, roundsPerSecond: wall > 0 ? Double(rounds) / wall : 0,
            bytesSent: recentRecords.last?.bytesSent,
            workerPeakResidentBytes: summaries.isEmpty ? nil : summaries.map(\.peakResidentBytes),
            spectralGap: spectralGap,
            events: events.isEmpty ? nil : events,
            clientAccuracyMeanLast: lastClient?.clientAccuracyMean,
            clientAccuracyWorstLast: lastClient?.clientAccuracyWorst,
            clientAccuracyMeanBest: bestClient?.clientAccuracyMean, clientAccuracyBestRound: bestClient?.round,
            startupSeconds: launchedAt.flatMap { launched in startedAt.map { ($0 - launched) / .seconds(1) } },
            payloads: payloadDecision)
        summary.workerSharedResidentBytes =
            payloadDecision?.plan == nil || summaries.isEmpty ? nil : summaries.map { $0.sharedResidentBytes ?? 0 }
        summary.workerSharedProportionalBytes =
            payloadDecision?.plan == nil || summaries.isEmpty ? nil : summaries.map { $0.sharedProportionalBytes ?? 0 }
        summary.clientValidationAccuracyMeanLast = lastClient?.clientValidationAccuracyMean
        summary.clientValidationAccuracyWorstLast = lastClient?.clientValidationAccuracyWorst
        return summary
    }

    private func writeSummary() {
        do { try report?.writeSummary(summary) } catch { log("cannot write summary.json: \(error)") }
    }
}

/// Returns the allocator's free pages to the system (glibc's `malloc_trim`); nothing elsewhere.
func releaseFreeMemory() {
    #if canImport(Glibc)
        _ = glibcMallocTrim(0)
    #endif
}

/// Fixes glibc's mmap threshold at 128 KiB for this process: allocations that large get pages of
/// their own and give them back when freed. Left dynamic, glibc raises the threshold each time
/// such a block is freed (up to 32 MiB), after which a run's large temporaries (the models
/// gathered for Ξ², a checkpoint's states) come from the heap and the resident set creeps up with
/// fragmentation. For the coordinator only: a worker's resident set is flat without it, and its
/// per-round model copies would each cost fresh pages (measured 10–20 % slower).
public func fixAllocatorThresholds() {
    #if canImport(Glibc)
        _ = glibcMallopt(-3, 131_072)  // M_MMAP_THRESHOLD
    #endif
}

#if canImport(Glibc)
    @_silgen_name("malloc_trim") private func glibcMallocTrim(_ pad: Int) -> Int32
    @_silgen_name("mallopt") private func glibcMallopt(_ parameter: Int32, _ value: Int32) -> Int32
#endif

/// The live progress line: round/total, elapsed, ETA, rounds/s, train loss, test accuracy, Ξ².
public final class ProgressLine {
    private let interactive: Bool
    private let write: (String) -> Void
    private var lastPrinted = -Double.infinity
    private var lastTestAccuracy: Double?
    private var printedAny = false
    private let minimumInterval: Double

    public init(interactive: Bool, minimumInterval: Double = 1, write: @escaping (String) -> Void) {
        self.interactive = interactive
        self.write = write
        self.minimumInterval = minimumInterval
    }

    func update(record: RoundRecord, elapsed: Double, totalRounds: Int) {
        if let accuracy = record.testAccuracy { lastTestAccuracy = accuracy }
        // The line is formatted only when it is shown (at most once per interval), not every round.
        guard elapsed - lastPrinted >= minimumInterval || record.round == totalRounds else { return }
        let rate = elapsed > 0 ? Double(record.round) / elapsed : 0
        let eta = rate > 0 ? Double(totalRounds - record.round) / rate : 0
        var line =
            "round \(record.round)/\(totalRounds) | \(format(elapsed, 1))s elapsed, ETA \(format(eta, 0))s | \(format(rate, 1)) rounds/s"
        line += " | train loss \(format(record.trainLoss, 4))"
        if let accuracy = lastTestAccuracy { line += " | test acc \(format(accuracy * 100, 2))%" }
        if let xi = record.consensusDistanceSquared { line += " | Ξ² \(scientific(xi))" }
        lastPrinted = elapsed
        printedAny = true
        write(interactive ? "\r\u{1B}[K" + line : line + "\n")
    }

    func finish() {
        if interactive && printedAny { write("\n") }
    }

    private func format(_ value: Double, _ digits: Int) -> String { String(format: "%.\(digits)f", value) }
    private func scientific(_ value: Double) -> String { String(format: "%.3e", value) }
}

/// `read(value)` with the value borrowed through `inout`: a getter of another module's struct,
/// called on a class's stored property, copies the struct (every reference in it retained and
/// released) because the class's storage could change during the call; through `inout` it cannot.
@inline(__always)
func inPlace<Value, Result>(_ value: inout Value, _ read: (inout Value) -> Result) -> Result { read(&value) }
