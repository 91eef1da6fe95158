import Algorithms
import Datasets
import Diagnostics
import LearningCore
import RunRecords
import Transport

/// What the coordinator asks its shell to do.
public enum CoordinatorDirective {
    case connect(Peer, endpoint: String)
    case send(Envelope, to: Peer)
    /// The barrier was released: start the clock.
    case started
    case record(RoundRecord)
    /// How payloads travel in this run, decided once every worker registered (before the
    /// assignments go out): record it; with a plan, create the coordinator's segment.
    case payloads(PayloadDecision)
    case log(String)
    /// Every round recorded and every worker finished.
    case complete([WorkerSummary])
    case fail(String)
    /// Measure curvature and sharpness on this snapshot (off the message loop).
    case measureSharpness(SharpnessJob)
    /// Write this checkpoint once the sharpness measurements queued before it are written, then
    /// call `onCheckpointWritten`: the workers wait for it before their next round.
    case checkpoint(CheckpointSnapshot)
    /// Evaluate x̄ and the workers' models (off the message loop when the shell can), then call
    /// `onEvaluation`: the round's record waits for it.
    case evaluate(EvaluationJob)
}

/// A snapshot for the sharpness thread: x̄, the gathered workers' models with their ranks, and
/// the round's learning rate.
public struct SharpnessJob: Sendable {
    public var round: Int
    public var learningRate: Double
    public var average: [Float]
    /// The models gathered this round (every live worker's; in federated mode the sampled
    /// clients'), in the order of `workerRanks`.
    public var workers: [[Float]]
    public var workerRanks: [Int]

    public init(round: Int, learningRate: Double, average: [Float], workers: [[Float]], workerRanks: [Int]) {
        precondition(workers.count == workerRanks.count, "one rank per model")
        self.round = round
        self.learningRate = learningRate
        self.average = average
        self.workers = workers
        self.workerRanks = workerRanks
    }

    /// The models of the workers `ranks` asks for (`--sharpness-workers`), by rank: a worker
    /// removed after a failure, or a federated client not sampled this round, has no model here
    /// and is left out.
    public func models(ofRanks ranks: [Int]) -> [(rank: Int, model: [Float])] {
        ranks.compactMap { rank in workerRanks.firstIndex(of: rank).map { (rank, workers[$0]) } }
    }
}

/// Everything a bit-exact continuation needs after `round` rounds: the coordinator's state and
/// every worker's, as each wrote it (`WorkerMachine.checkpointState`). Taken when the run is at
/// rest: every record up to `round` written, no worker past it.
public struct CheckpointSnapshot: Sendable {
    public var round: Int
    public var coordinatorState: [UInt8]
    /// By rank.
    public var workerStates: [[UInt8]]

    public init(round: Int, coordinatorState: [UInt8], workerStates: [[UInt8]]) {
        self.round = round
        self.coordinatorState = coordinatorState
        self.workerStates = workerStates
    }
}

/// The coordinator as a state machine: registration and rank assignment, the start barrier, and
/// per-round aggregation of the workers' metrics into `RoundRecord`s (Ξ², x̄'s test loss and
/// accuracy, the workers' own accuracies). No sockets, files or clocks.
public struct CoordinatorMachine {
    /// The run's configuration; its topology changes when failed workers are removed.
    public private(set) var configuration: RunConfiguration
    public let runID: UInt64
    private let network: Network
    /// x̄'s and the workers' evaluations (run by the shell; nil without a test set).
    public let evaluation: AverageModelEvaluation?
    /// Rounds whose record waits for its evaluation.
    private var awaitingEvaluation: Set<Int> = []
    private let statisticsSet: Dataset?
    private let averageModelIsComplete: Bool
    /// Per worker, its own test split (honest per-client evaluation).
    private let initialParameters: [Float]

    private enum Phase { case registering, loading, running, done }
    private var phase = Phase.registering
    private var registrations: [Int: Registration] = [:]
    private var ready: Set<Int> = []
    /// round → rank → metrics and, on gathering rounds, parameters.
    private var reports: [Int: [Int: (WorkerMetrics, FloatPayload?)]] = [:]
    public private(set) var nextRoundToRecord = 1
    private var summaries: [Int: WorkerSummary] = [:]
    public private(set) var lastRecord: RoundRecord?
    /// The last average model x̄ formed.
    public private(set) var averageModel: [Float]?
    /// The models gathered at the last gathering round (shared, not copied), and their ranks;
    /// emptied once that round is recorded when they were read from shared memory.
    private var lastGathered: [FloatPayload] = []
    private var lastGatheredRanks: [Int] = []
    public var lastWorkerModels: [[Float]] { lastGathered.map(\.array) }
    /// The ranks of `lastWorkerModels`, in order.
    public var lastWorkerRanks: [Int] { lastGatheredRanks }
    public private(set) var rejectedMessages = 0
    /// Workers still in the run.
    public private(set) var alive: [Int] = []
    /// Failures and what was done about them, for the report.
    public private(set) var events: [String] = []
    private var previousBytes: [Int: Int] = [:]
    /// Checkpoints: the workers' states by round and rank, the last round whose checkpoint was
    /// written (or skipped), the one being written, the rounds asked for by wall time, and the
    /// last round each worker was told is recorded.
    private var checkpointStates: [Int: [Int: [UInt8]]] = [:]
    public private(set) var lastCheckpoint = 0
    private var checkpointInProgress: Int?
    private var requestedCheckpoints: Set<Int> = []
    private var acknowledged = 0
    /// A resumed run: the round it continues after and each worker's state.
    private var resume: CheckpointSnapshot?
    /// Federated: the global model just aggregated, broadcast after the round is recorded.
    private var federatedGlobal: [Float]?
    /// Records made but still waiting for the workers' own evaluations of their round (with
    /// per-client evaluation), in round order: records are written in order.
    private var heldRecords: [RoundRecord] = []
    /// The workers' evaluations of their own models on their own test splits, by round and rank.
    private var clientEvaluations: [Int: [Int: ClientEvaluation]] = [:]
    /// Clients whose deployed model's loss was found not finite (reported once each).
    private var divergedClients: Set<Int> = []
    /// `--payloads` and what the coordinator found of its host's shared memory; nil (simulation,
    /// tests): no decision is made and payloads travel as the transport passes them.
    public var payloadRequest: (mode: PayloadMode, coordinator: SharedMemoryReport)?
    public private(set) var payloadDecision: PayloadDecision?
    /// Makes the snapshot of a model that is sent (the shell sets its transport's `makePayload`).
    public var payloadMaker: (UnsafeBufferPointer<Float>, Int) -> FloatPayload = { values, _ in
        FloatPayload(copying: values)
    }
    /// Where the models an evaluation or a sharpness job takes are copied: arrays the finished
    /// jobs gave back (the shell's runners return them), or new ones when nil.
    public var modelCopies: ModelCopies?

    private func copy(_ values: UnsafeBufferPointer<Float>) -> [Float] {
        modelCopies?.copy(values) ?? Array(values)
    }

    /// A gathered model as an array of its own (it outlives the payload's shared-memory slot).
    private func copy(_ payload: FloatPayload) -> [Float] {
        withExtendedLifetime(payload) { copy(payload.buffer) }
    }

    /// - Parameter testSet: the evaluation data; nil disables evaluation (test accuracy omitted).
    /// - Parameter trainSubset: the fixed training subset x̄'s train loss (and sharpness) is measured on.
    /// - Parameter statisticsSet: training examples x̄'s batch-norm statistics are recomputed on
    ///   (with `--average-model-bn recomputed`).
    public init(
        configuration: RunConfiguration, runID: UInt64, testSet: Dataset?, trainSubset: Dataset? = nil,
        statisticsSet: Dataset? = nil
    ) {
        self.configuration = configuration
        self.statisticsSet = statisticsSet
        averageModelIsComplete = configuration.averageModelIsComplete
        if !averageModelIsComplete {
            events.append(
                "x̄ is not evaluated: in federated mode the personal slices never reach the server; see the per-client figures"
            )
        }
        if configuration.federated == nil, let target = configuration.topology.consensusTarget, target.isBiased {
            events.append("topology \(configuration.topology.name): \(target.description)")
        }
        self.runID = runID
        let network = Network(spec: configuration.model)
        self.network = network
        initialParameters = network.initialParameters(seed: configuration.seed)
        // Federated: the server's model before any round (what every client starts from).
        if configuration.federated != nil { federatedGlobal = initialParameters }
        evaluation = testSet.map { test in
            let size = configuration.workerEvaluationSize
            let workers: Evaluator
            if size > 0, size < test.count {
                var indices = Array(0..<test.count)
                var generator = SplitMix64(seed: configuration.seed, stream: 0xE7A1)
                generator.shuffle(&indices)
                workers = Evaluator(network: network, dataset: test.subset(Array(indices.prefix(size)).sorted()))
            } else {
                workers = Evaluator(network: network, dataset: test)
            }
            return AverageModelEvaluation(
                test: Evaluator(network: network, dataset: test),
                train: trainSubset.map { Evaluator(network: network, dataset: $0) }, workers: workers)
        }
    }

    public var isRunning: Bool { phase == .running }
    /// Increases whenever the run moves: a registration, a worker ready, the barrier, a round
    /// recorded, a worker finished. The shell's peer timeout is about this, not about messages
    /// (heartbeats keep arriving from a wedged run).
    public private(set) var progress = 0
    /// The workers have their assignments and are loading data (failure detection applies).
    public var isLoading: Bool { phase == .loading }

    /// Which workers the coordinator is waiting on, for timeout messages.
    public var waitingOn: String {
        switch phase {
        case .registering: return "registration (\(registrations.count) of \(configuration.workers) workers registered)"
        case .loading:
            let missing = (0..<configuration.workers).filter { !ready.contains($0) }
            return "workers \(missing) to load their data"
        case .running:
            if let held = heldRecords.first, awaitingEvaluation.contains(held.round) {
                return "x̄'s evaluation of round \(held.round)"
            }
            if let held = heldRecords.first {
                let have = clientEvaluations[held.round].map { Set($0.keys) } ?? []
                return "round \(held.round) client evaluations from workers \(alive.filter { !have.contains($0) })"
            }
            if nextRoundToRecord > configuration.rounds {
                return "workers \(alive.filter { summaries[$0] == nil }) to report that they finished"
            }
            let have = reports[nextRoundToRecord].map { Set($0.keys) } ?? []
            let missing = alive.filter { !have.contains($0) }
            return "round \(nextRoundToRecord) metrics from workers \(missing)"
        case .done: return "nothing"
        }
    }

    public mutating func onEnvelope(_ envelope: Envelope) -> [CoordinatorDirective] {
        let kind = envelope.header.kind
        if kind != .register && envelope.header.runID != runID {
            return reject(
                "\(kind) from sender \(envelope.header.sender) carries run id \(envelope.header.runID), not this run's \(runID)"
            )
        }
        let sender = Int(envelope.header.sender)
        if kind != .register && !(0..<configuration.workers).contains(sender) {
            return reject("\(kind) from unknown sender \(sender)")
        }
        switch kind {
        case .register:
            do {
                return onRegistration(try Body.decode(Registration.self, from: envelope))
            } catch {
                return reject("\(error)")
            }
        case .ready:
            guard phase == .loading else { return reject("ready from worker \(sender) outside the loading phase") }
            if ready.insert(sender).inserted { progress += 1 }
            guard ready.count == configuration.workers else { return [] }
            phase = .running
            var directives: [CoordinatorDirective] = [.started]
            for rank in 0..<configuration.workers {
                directives.append(.send(Envelope(header: header(.start)), to: .worker(rank)))
            }
            return directives
        case .metrics:
            guard phase == .running else { return reject("metrics from worker \(sender) before the start") }
            guard alive.contains(sender) else { return reject("metrics from worker \(sender), which was removed") }
            // One message carries one round's report, or several consecutive rounds' (a gossip
            // worker sends rounds that carry no model a few at a time); a model comes with the last.
            let batch: [WorkerMetrics]
            do {
                batch = try WorkerMetrics.decodedBatch(envelope.body, atMost: configuration.maxRoundsAhead)
            } catch {
                return reject("\(error)")
            }
            for (index, metrics) in batch.enumerated() {
                // Flow control lets a worker complete at most --max-rounds-ahead rounds past the
                // last recorded one, so that many rounds of reports are all the coordinator ever
                // holds; a report beyond is a protocol violation, not something to buffer.
                guard metrics.round >= nextRoundToRecord, metrics.round <= configuration.rounds,
                    metrics.round < nextRoundToRecord + configuration.maxRoundsAhead,
                    reports[metrics.round]?[sender] == nil, index == 0 || metrics.round == batch[index - 1].round + 1
                else {
                    return reject("unexpected metrics from worker \(sender) for round \(metrics.round)")
                }
                let isLast = index == batch.count - 1
                if carriesModel(metrics) && (!isLast || envelope.payload?.count != network.parameterCount) {
                    return reject(
                        "metrics from worker \(sender) for round \(metrics.round) lack its \(network.parameterCount) parameters"
                    )
                }
            }
            let last = batch[batch.count - 1]
            let gathers = carriesModel(last)
            // A diverged client's model must not reach the server's average (a NaN global model
            // would be rejected by every client, and the run would stall): the run fails, or drops
            // it. Gossip models are checked by the neighbours that mix them, so the coordinator's
            // per-round gathering does not pay a pass over every model for it.
            if configuration.federated != nil, gathers, let payload = envelope.payload, !payload.isFinite {
                return onWorkerFailed(
                    sender,
                    cause:
                        "worker \(sender) sent a model with NaN or Inf values for round \(last.round) (its training diverged)"
                )
            }
            for metrics in batch.dropLast() { reports[metrics.round, default: [:]][sender] = (metrics, nil) }
            reports[last.round, default: [:]][sender] = (last, gathers ? envelope.payload : nil)
            return recordCompleteRounds()
        case .finished:
            do {
                let summary = try Body.decode(WorkerSummary.self, from: envelope)
                if summaries.updateValue(summary, forKey: sender) == nil { progress += 1 }
            } catch {
                return reject("\(error)")
            }
            return completeIfDone()
        case .abort:
            phase = .done
            return [.fail("worker \(sender) aborted: \(String(decoding: envelope.body, as: UTF8.self))")]
        case .heartbeat:
            return []
        case .clientEvaluation:
            do {
                return onClientEvaluation(try Body.decode(ClientEvaluation.self, from: envelope), from: sender)
            } catch {
                return reject("\(error)")
            }
        case .checkpointState:
            return onCheckpointState(envelope, from: sender)
        case .assignment, .start, .parameters, .acknowledge, .membership, .globalModel, .reduceScatter, .allGather,
            .allReduceResult, .allReduceContribution, .allReduceDirectory, .checkpointRequest:
            return reject("the coordinator does not accept \(kind) messages")
        }
    }

    private mutating func onRegistration(_ registration: Registration) -> [CoordinatorDirective] {
        // A registration seen twice (a reconnecting socket may deliver it again) changes nothing.
        if registrations.values.contains(where: { $0.nonce == registration.nonce }) { return [] }
        guard phase == .registering else {
            return [
                .log(
                    "ignored a registration from \(registration.host) pid \(registration.processID): all \(configuration.workers) workers are registered"
                )
            ]
        }
        let rank: Int
        if let requested = registration.requestedRank {
            guard (0..<configuration.workers).contains(requested), registrations[requested] == nil else {
                phase = .done
                return [
                    .fail(
                        "worker \(registration.host) pid \(registration.processID) asked for rank \(requested), which is out of range 0..<\(configuration.workers) or taken"
                    )
                ]
            }
            rank = requested
        } else {
            guard let free = (0..<configuration.workers).first(where: { registrations[$0] == nil }) else { return [] }
            rank = free
        }
        registrations[rank] = registration
        progress += 1
        guard registrations.count == configuration.workers else { return [] }
        phase = .loading
        alive = Array(0..<configuration.workers)
        let endpoints = (0..<configuration.workers).map { registrations[$0]!.endpoint }
        var directives: [CoordinatorDirective] = []
        var refusal: String?
        if let (mode, coordinatorReport) = payloadRequest {
            let plan = SharedPayloadPlan(
                slotCount: SharedPayloadPlan.slotCount(
                    maxRoundsAhead: configuration.maxRoundsAhead, publishesPerRound: configuration.usesAllReduce ? 3 : 2
                ),
                modelSize: network.parameterCount * (configuration.algorithm.ruleType.vectorsPerMessage))
            switch PayloadDecision.decide(
                requested: mode, coordinator: coordinatorReport,
                workers: (0..<configuration.workers).map { registrations[$0]!.sharedMemory }, plan: plan,
                segmentBytes: plan.segmentBytes)
            {
            case .failure(let error):
                // The workers get their assignments first: only then do they accept the abort
                // that tells them why the run stops.
                refusal = "\(error)"
            case .success(let decision):
                payloadDecision = decision
                directives.append(.payloads(decision))
            }
        }
        let bodies = Assignment.encodedBodies(
            runID: runID, configuration: configuration, workerEndpoints: endpoints,
            nonces: (0..<configuration.workers).map { registrations[$0]!.nonce },
            sharedPayloads: payloadDecision?.plan,
            resume: { rank in self.resume.map { WorkerResume(round: $0.round, state: $0.workerStates[rank]) } })
        for (rank, body) in bodies.enumerated() {
            directives.append(.connect(.worker(rank), endpoint: endpoints[rank]))
            directives.append(.send(Envelope(header: header(.assignment), body: body), to: .worker(rank)))
        }
        if let refusal {
            phase = .done
            directives.append(.fail(refusal))
        }
        return directives
    }

    private mutating func recordCompleteRounds() -> [CoordinatorDirective] {
        var directives: [CoordinatorDirective] = []
        while let round = reports[nextRoundToRecord], alive.allSatisfy({ round[$0] != nil }) {
            let (record, evaluation) = makeRecord(nextRoundToRecord, reports: round)
            heldRecords.append(record)
            if let evaluation {
                awaitingEvaluation.insert(evaluation.round)
                directives.append(.evaluate(evaluation))
            }
            if configuration.federated != nil, let global = federatedGlobal {
                let payload = global.withUnsafeBufferPointer { payloadMaker($0, nextRoundToRecord) }
                for peer in alive {
                    directives.append(
                        .send(
                            Envelope(
                                header: MessageHeader(
                                    kind: .globalModel, runID: runID, round: Int64(nextRoundToRecord), sender: -1),
                                payload: payload),
                            to: .worker(peer)))
                }
            }
            if configuration.measuresSharpness(afterRound: nextRoundToRecord), averageModelIsComplete,
                let average = averageModel
            {
                directives.append(
                    .measureSharpness(
                        SharpnessJob(
                            round: nextRoundToRecord, learningRate: record.learningRate,
                            average: average.withUnsafeBufferPointer { copy($0) },
                            workers: lastGathered.map { copy($0) },
                            workerRanks: lastGatheredRanks)))
            }
            // Models read in place from the workers' shared memory: the record is void if a
            // worker rewrote one before the coordinator was done with it.
            if let damage = round.values.lazy.compactMap({ $0.1?.damage() }).first {
                phase = .done
                return [.fail("round \(nextRoundToRecord): \(damage)")]
            }
            // Models in shared memory are valid only until their senders reuse the slots.
            if lastGathered.contains(where: \.isBorrowed) { lastGathered = [] }
            reports.removeValue(forKey: nextRoundToRecord)
            nextRoundToRecord += 1
        }
        directives += releaseRecords()
        directives += acknowledgeRecorded()
        return directives + checkpointIfReady() + completeIfDone()
    }

    /// Whether a worker's report of this round comes with its model: on the rounds the
    /// coordinator measures (gossip), or when the client was sampled (federated).
    private func carriesModel(_ metrics: WorkerMetrics) -> Bool {
        configuration.federated == nil
            ? configuration.gathersParameters(afterRound: metrics.round) : metrics.sampled == true
    }

    private func awaitsClientEvaluations(_ round: Int) -> Bool {
        configuration.clientTestSize > 0 && configuration.evaluates(afterRound: round)
    }

    /// x̄'s evaluation of a round is done: fill its record and write what can be written.
    public mutating func onEvaluation(_ result: EvaluationResult) -> [CoordinatorDirective] {
        guard awaitingEvaluation.remove(result.round) != nil,
            let index = heldRecords.firstIndex(where: { $0.round == result.round })
        else { return [.log("coordinator: an evaluation of round \(result.round), which no record waits for")] }
        result.fill(&heldRecords[index])
        return releaseRecords() + checkpointIfReady() + completeIfDone()
    }

    /// Writes the held records whose evaluations (x̄'s, the clients') are all in, in round order.
    private mutating func releaseRecords() -> [CoordinatorDirective] {
        var directives: [CoordinatorDirective] = []
        while var record = heldRecords.first {
            if awaitingEvaluation.contains(record.round) { break }
            if awaitsClientEvaluations(record.round) {
                guard let evaluations = clientEvaluations[record.round], alive.allSatisfy({ evaluations[$0] != nil })
                else { break }
                record.setClientFigures(alive.map { evaluations[$0]! })
                clientEvaluations.removeValue(forKey: record.round)
            }
            heldRecords.removeFirst()
            progress += 1
            lastRecord = record
            directives.append(.record(record))
        }
        return directives
    }

    private mutating func onClientEvaluation(_ evaluation: ClientEvaluation, from sender: Int) -> [CoordinatorDirective]
    {
        guard alive.contains(sender), awaitsClientEvaluations(evaluation.round),
            evaluation.round >= nextRoundToRecord - heldRecords.count
        else {
            return reject("unexpected client evaluation from worker \(sender) for round \(evaluation.round)")
        }
        guard clientEvaluations[evaluation.round]?[sender] == nil else {
            return reject("duplicate client evaluation from worker \(sender) for round \(evaluation.round)")
        }
        // A diverged personal model has a NaN or infinite loss: that is a figure to record (its
        // accuracy is still a fraction), not a malformed message to wait for forever.
        guard (0...1).contains(evaluation.accuracy), evaluation.examples > 0,
            evaluation.trainingExamples >= 0,
            (evaluation.validationAccuracy.map { (0...1).contains($0) } ?? true),
            (evaluation.validationExamples.map { $0 > 0 } ?? true)
        else {
            return reject("client evaluation from worker \(sender) out of range: \(evaluation)")
        }
        clientEvaluations[evaluation.round, default: [:]][sender] = evaluation
        var directives: [CoordinatorDirective] = []
        if !evaluation.loss.isFinite && !divergedClients.contains(sender) {
            divergedClients.insert(sender)
            let event =
                "round \(evaluation.round): client \(sender)'s deployed model has loss \(evaluation.loss) on its own test split (its personal model diverged; its accuracy is still recorded)"
            events.append(event)
            directives.append(.log("coordinator: " + event))
        }
        return directives + releaseRecords() + checkpointIfReady() + completeIfDone()
    }

    /// The round's record, and the evaluation it waits for on an evaluation round.
    private mutating func makeRecord(_ roundNumber: Int, reports: [Int: (WorkerMetrics, FloatPayload?)]) -> (
        RoundRecord, EvaluationJob?
    ) {
        let ordered = alive.map { reports[$0]! }
        // Federated rounds: only the sampled clients trained; the loss and the learning rate are
        // theirs (the rate is the mean over them: it differs between workers only when they take
        // different numbers of steps per round on a schedule counted in steps).
        let trained = ordered.filter { $0.0.sampled != false }.map(\.0)
        if trained.isEmpty {
            events.append(
                "round \(roundNumber): no client that trained this round is alive; the global model is unchanged")
        }
        let losses = trained.map(\.trainLoss)
        var job: EvaluationJob?
        var record = RoundRecord(
            round: roundNumber, trainLoss: losses.reduce(0, +) / Double(losses.count),
            trainLossMin: losses.min() ?? .nan, trainLossMax: losses.max() ?? .nan,
            learningRate: trained.reduce(0) { $0 + $1.learningRate } / Double(trained.count),
            bytesSent: ordered.reduce(0) { $0 + $1.0.bytesSent },
            epoch: Double(ordered.reduce(0) { $0 + $1.0.epoch }) / Double(ordered.count))
        let curriculum = ordered.first { $0.0.additiveLambda != nil }?.0
        record.additiveLambda = curriculum?.additiveLambda
        record.additiveMu = curriculum?.additiveMu
        let zeroFractions = ordered.compactMap(\.0.additiveGlobalZeroFraction)
        if !zeroFractions.isEmpty {
            record.additiveGlobalZeroFraction = zeroFractions.reduce(0, +) / Double(zeroFractions.count)
        }
        if let period = configuration.topology.period, period > 1 {
            record.topologyPhase = (roundNumber - 1) % period
        }
        let models = ordered.compactMap(\.1)
        if alive.count < configuration.workers { record.workersAlive = alive.count }
        record.bytesSentByWorker = zip(alive, ordered).map { rank, report in
            defer { previousBytes[rank] = report.0.bytesSent }
            return report.0.bytesSent - (previousBytes[rank] ?? 0)
        }
        if models.count == alive.count || (configuration.federated != nil && !models.isEmpty) {
            // Federated: x̄ is the server's model, the sampled clients' uploads aggregated by its
            // rule (FedAvg's size-weighted average), and Ξ² is measured about it.
            var consensus = withExtendedLifetime(models) {
                guard let federated = configuration.federated else {
                    // Last round's x̄ is the storage of this one's (its pages reused, not fresh).
                    var previous = averageModel ?? []
                    averageModel = nil
                    return ConsensusDistance(
                        models: models.map(\.buffer), layout: network.layout, reusing: &previous,
                        reference: initialParameters)
                }
                let examples = ordered.filter { $0.1 != nil }.map { $0.0.shardSize ?? 1 }
                let global = federated.aggregator.aggregate(models.map(\.buffer), examples: examples)
                federatedGlobal = global
                return ConsensusDistance(
                    models: models.map(\.buffer), layout: network.layout, about: global, reference: initialParameters)
            }
            record.consensusDistanceSquared = consensus.distanceSquared
            record.consensusDistanceSquaredByLayer = Dictionary(
                uniqueKeysWithValues: consensus.perSlice.map { ($0.name, $0.distanceSquared) })
            // ‖x̄‖ and ‖x̄ − x₀‖ (parameters only) come from the same pass over the models.
            record.averageModelNorm = consensus.averageSquaredNorm.squareRoot()
            record.distanceFromInit = consensus.distanceFromReferenceSquared?.squareRoot()
            record.distanceFromInitByLayer = Dictionary(
                uniqueKeysWithValues: consensus.perSliceDistanceFromReference.map {
                    ($0.name, $0.distanceSquared.squareRoot())
                })
            averageModel = consensus.average
            lastGathered = models
            lastGatheredRanks = zip(alive, ordered).filter { $0.1.1 != nil }.map(\.0)
            if configuration.model.batchNorm, configuration.batchNorm.averageModelStatistics == .recomputed,
                let statisticsSet,
                configuration.evaluates(afterRound: roundNumber)
                    || configuration.measuresSharpness(afterRound: roundNumber)
            {
                RunningStatisticsEstimator.recompute(
                    &consensus.average, network: network, dataset: statisticsSet,
                    groupSize: configuration.batchNorm.virtualBatchSize ?? configuration.batchSize)
                averageModel = consensus.average
            }
            if configuration.evaluates(afterRound: roundNumber), averageModelIsComplete, evaluation != nil {
                // Copies, so the x̄ kept for the next round's pass is not shared (it would be
                // copied on write there) and the models outlive their shared-memory slots.
                job = EvaluationJob(
                    round: roundNumber, average: consensus.average.withUnsafeBufferPointer { copy($0) },
                    workers: configuration.evaluateWorkers
                        ? models.map { copy($0) } : [])
            }
        }
        return (record, job)
    }

    private mutating func completeIfDone() -> [CoordinatorDirective] {
        guard phase == .running, nextRoundToRecord > configuration.rounds, heldRecords.isEmpty,
            alive.allSatisfy({ summaries[$0] != nil })
        else {
            return []
        }
        phase = .done
        // Every round is recorded and every worker finished: release them all.
        return acknowledgements(recorded: configuration.rounds + 1) + [
            .complete(alive.map { summaries[$0]! })
        ]
    }

    /// Tells the workers what is recorded (flow control), except the round of a checkpoint not yet
    /// written: the workers wait after it until it is. An acknowledgement goes out once a quarter
    /// of the window (`maxRoundsAhead`) has been recorded since the last, or when the workers wait
    /// for it (a checkpoint written): a worker never lacks more than that of its window, and with
    /// many workers the acknowledgements are a fraction of the messages they were.
    private mutating func acknowledgeRecorded(force: Bool = false) -> [CoordinatorDirective] {
        var recorded = nextRoundToRecord - 1
        if checkpointDue(recorded) && lastCheckpoint < recorded { recorded -= 1 }
        guard recorded > acknowledged else { return [] }
        let stride = max(1, configuration.maxRoundsAhead / 4)
        guard force || recorded - acknowledged >= stride || checkpointDue(recorded + 1) else { return [] }
        acknowledged = recorded
        return acknowledgements(recorded: recorded)
    }

    private func checkpointDue(_ round: Int) -> Bool {
        guard round > 0, round < configuration.rounds else { return false }
        return configuration.checkpointsByCount(afterRound: round) || requestedCheckpoints.contains(round)
    }

    /// A worker's state after a checkpoint's round.
    private mutating func onCheckpointState(_ envelope: Envelope, from sender: Int) -> [CoordinatorDirective] {
        let round = Int(clamping: envelope.header.round)
        guard phase == .running, alive.contains(sender), checkpointDue(round), round > lastCheckpoint,
            round >= nextRoundToRecord - 1, checkpointStates[round]?[sender] == nil, !envelope.body.isEmpty
        else {
            return reject("an unexpected checkpoint state from worker \(sender) for round \(round)")
        }
        checkpointStates[round, default: [:]][sender] = envelope.body
        return checkpointIfReady()
    }

    /// The checkpoint of the last recorded round, once the run is at rest there: its records all
    /// written and every live worker's state in.
    private mutating func checkpointIfReady() -> [CoordinatorDirective] {
        let round = nextRoundToRecord - 1
        guard phase == .running, checkpointDue(round), lastCheckpoint < round, checkpointInProgress == nil,
            heldRecords.isEmpty, let states = checkpointStates[round], alive.allSatisfy({ states[$0] != nil })
        else { return [] }
        checkpointInProgress = round
        guard alive.count == configuration.workers else {
            // A run that lost workers cannot be resumed as it is: no checkpoint, the workers go on.
            events.append("round \(round): no checkpoint written (workers were removed from the run)")
            return onCheckpointWritten(round: round)
        }
        return [
            .checkpoint(
                CheckpointSnapshot(
                    round: round, coordinatorState: checkpointState(),
                    workerStates: (0..<configuration.workers).map { states[$0]! }))
        ]
    }

    /// The shell wrote the checkpoint of `round` (or could not: it logged why): the workers go on.
    public mutating func onCheckpointWritten(round: Int) -> [CoordinatorDirective] {
        guard checkpointInProgress == round else {
            return [.log("coordinator: a checkpoint of round \(round) written, which none was waiting for")]
        }
        checkpointInProgress = nil
        lastCheckpoint = round
        checkpointStates = checkpointStates.filter { $0.key > round }
        requestedCheckpoints = requestedCheckpoints.filter { $0 > round }
        progress += 1
        return acknowledgeRecorded(force: true) + completeIfDone()
    }

    /// Whether a checkpoint asked for by wall time is still to come.
    public var checkpointPending: Bool {
        checkpointInProgress != nil || requestedCheckpoints.contains { $0 > lastCheckpoint }
    }

    /// The wall-time trigger (the shell keeps the clock): a checkpoint after the first round no
    /// worker can have begun yet. A worker completes at most `maxRoundsAhead` rounds past what it
    /// was told is recorded, and this request reaches it before any later acknowledgement (one
    /// connection, in order), so round `nextRoundToRecord + maxRoundsAhead` is still ahead of
    /// every worker when it reads the request.
    public mutating func requestCheckpoint() -> [CoordinatorDirective] {
        guard phase == .running, alive.count == configuration.workers, !checkpointPending else { return [] }
        let round = nextRoundToRecord + configuration.maxRoundsAhead
        guard round < configuration.rounds else { return [] }
        requestedCheckpoints.insert(round)
        return alive.map {
            .send(
                Envelope(
                    header: MessageHeader(kind: .checkpointRequest, runID: runID, round: Int64(round), sender: -1)),
                to: .worker($0))
        }
    }

    /// The coordinator's part of a checkpoint: what the records after it depend on.
    private func checkpointState() -> [UInt8] {
        var writer = StateWriter()
        writer.section("coordinator")
        writer.write(nextRoundToRecord - 1)
        let ranks = previousBytes.keys.sorted()
        writer.write(ranks)
        writer.write(ranks.map { previousBytes[$0]! })
        writer.write(events.count)
        for event in events { writer.write(event) }
        writer.write(divergedClients.sorted())
        writer.write(federatedGlobal != nil)
        if let federatedGlobal { writer.write(federatedGlobal) }
        writer.write(averageModel != nil)
        if let averageModel { writer.write(averageModel) }
        return writer.bytes
    }

    /// A resumed run: the coordinator continues after the checkpoint's round, and each worker gets
    /// its state with its assignment. Call before the workers register.
    public mutating func resume(from snapshot: CheckpointSnapshot) throws(StateArchiveError) {
        guard phase == .registering, registrations.isEmpty else {
            throw StateArchiveError("a run is resumed before its workers register")
        }
        guard snapshot.workerStates.count == configuration.workers else {
            throw StateArchiveError(
                "the checkpoint holds \(snapshot.workerStates.count) workers' states, the run has \(configuration.workers)"
            )
        }
        guard (1..<configuration.rounds).contains(snapshot.round) else {
            throw StateArchiveError("the checkpoint is of round \(snapshot.round) of \(configuration.rounds)")
        }
        var reader = StateReader(snapshot.coordinatorState)
        try reader.expectSection("coordinator")
        let round = try reader.readInt()
        guard round == snapshot.round else {
            throw StateArchiveError("the coordinator's state is of round \(round), the checkpoint's \(snapshot.round)")
        }
        let ranks = try reader.readInts()
        let bytes = try reader.readInts()
        guard ranks.count == bytes.count else { throw StateArchiveError("byte counters without their ranks") }
        var events: [String] = []
        for _ in 0..<(try reader.readInt()) { events.append(try reader.readString()) }
        let diverged = try reader.readInts()
        let count = network.parameterCount
        let global = try reader.readBool() ? try reader.readFloats(count: count, "the server's model") : nil
        let average = try reader.readBool() ? try reader.readFloats(count: count, "x̄") : nil
        guard reader.isAtEnd else { throw StateArchiveError("bytes left over after the coordinator's state") }
        previousBytes = Dictionary(uniqueKeysWithValues: zip(ranks, bytes))
        // The events before the checkpoint, then the resumption.
        self.events = events
        divergedClients = Set(diverged)
        if configuration.federated != nil { federatedGlobal = global ?? federatedGlobal }
        averageModel = average
        nextRoundToRecord = round + 1
        acknowledged = round
        lastCheckpoint = round
        resume = snapshot
    }

    private func acknowledgements(recorded: Int) -> [CoordinatorDirective] {
        alive.map {
            .send(
                Envelope(header: MessageHeader(kind: .acknowledge, runID: runID, round: Int64(recorded), sender: -1)),
                to: .worker($0))
        }
    }

    /// A worker has been silent longer than the failure timeout (the shell watches heartbeats).
    /// `limit`: the silence the shell allowed, when longer than the failure timeout (the start
    /// allowance of a large cluster setting up).
    public mutating func onWorkerSilent(_ rank: Int, seconds: Double, limit: Double? = nil) -> [CoordinatorDirective] {
        guard phase == .running || phase == .loading, alive.contains(rank) else { return [] }
        let host = registrations[rank].map { "\($0.host) pid \($0.processID)" } ?? "?"
        var allowance = ""
        if let limit, limit > configuration.failureTimeoutSeconds {
            allowance = String(
                format: ", × %.2f = %.1f s for %d workers setting up", limit / configuration.failureTimeoutSeconds,
                limit,
                configuration.workers)
        }
        let stage =
            phase == .loading
            ? "while loading its data, before the start barrier"
            : "while the coordinator was at round \(nextRoundToRecord)"
        let cause =
            "worker \(rank) (\(host)) sent nothing for \(String(format: "%.1f", seconds)) s (failure timeout \(configuration.failureTimeoutSeconds) s\(allowance)) \(stage)"
        return onWorkerFailed(rank, cause: cause)
    }

    /// A worker is dead or broken: the run fails, or (`--on-failure continue`, once running, with
    /// another worker left) goes on without it.
    private mutating func onWorkerFailed(_ rank: Int, cause: String) -> [CoordinatorDirective] {
        guard configuration.failurePolicy == .continue, phase == .running, alive.count > 1 else {
            phase = .done
            events.append("round \(nextRoundToRecord): \(cause); run aborted")
            return [.fail(cause)]
        }
        alive.removeAll { $0 == rank }
        configuration.topology = configuration.topology.removing([rank])
        let event =
            "round \(nextRoundToRecord): \(cause); removed, \(alive.count) workers continue on \(configuration.topology.name)"
        events.append(event)
        let change = MembershipChange(removed: [rank], topology: configuration.topology, reason: cause)
        var directives: [CoordinatorDirective] = [.log("coordinator: " + event)]
        for peer in alive {
            directives.append(
                .send(Envelope(header: header(.membership), body: Body.encode(change)), to: .worker(peer)))
        }
        return directives + recordCompleteRounds()
    }

    /// The run made no progress (see `progress`) for the peer timeout, heartbeats or not.
    public mutating func onSilence(seconds: Double) -> [CoordinatorDirective] {
        guard phase != .done else { return [] }
        let waitingFor = waitingOn
        phase = .done
        let cause =
            "no progress for \(Int(seconds)) s (peer timeout \(configuration.peerTimeoutSeconds) s) while waiting for \(waitingFor)"
        events.append(cause)
        return [.fail(cause)]
    }

    /// Tells every registered worker to stop (best effort, on failure or interrupt).
    public func abortMessages(reason: String) -> [CoordinatorDirective] {
        registrations.keys.sorted().filter { alive.isEmpty || alive.contains($0) }.map {
            .send(Envelope(header: header(.abort), body: Array(reason.utf8)), to: .worker($0))
        }
    }

    private func header(_ kind: MessageKind) -> MessageHeader {
        MessageHeader(kind: kind, runID: runID, round: 0, sender: -1)
    }

    private mutating func reject(_ reason: String) -> [CoordinatorDirective] {
        rejectedMessages += 1
        return [.log("coordinator: rejected: \(reason)")]
    }
}
