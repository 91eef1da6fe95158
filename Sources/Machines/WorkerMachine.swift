import Algorithms
import Datasets
import LearningCore
import RunRecords
import Topologies
import Transport

/// What a worker asks its shell to do.
public enum WorkerDirective {
    case connect(Peer, endpoint: String)
    case send(Envelope, to: Peer)
    /// Load this worker's shard, then call `onShardLoaded`.
    case loadShard(rank: Int, configuration: RunConfiguration)
    /// Run the local steps now by calling `onTrainTurn` (after the preceding sends are on their way).
    case trainLocally
    /// Pass payloads through shared memory from now on (create this worker's segment); comes
    /// before anything else of the run is sent.
    case shareModels(SharedPayloadPlan, runID: UInt64, rank: Int)
    case log(String)
    /// All rounds done; the process may exit 0.
    case finish
    /// Stop with an error; the process exits non-zero.
    case fail(String)
}

/// A gossip worker as a state machine in the style of SWIM.Instance: events in, directives out,
/// no sockets, files or clocks. The shell (`WorkerShell`) runs it over any `Transport`.
///
/// Round t (0-based; reported as t + 1) runs the algorithm's `GossipRule` (ATC, CTA, CHOCO-SGD,
/// gradient tracking; inside push-sum on directed graphs): its local update, its message to the
/// round's peers (before the update when the rule says so), and its combination once every
/// peer's message of the round is in. The machine knows no algorithm by name: it keeps rounds,
/// flow control, buffering, messaging, the private coordinates that never leave the worker, and
/// the all-reduce that stands for the neighbours' messages when the round is an exact average.
/// The neighbours and weights of round t come from `configuration.topology.topology(atRound: t)`,
/// so fixed, periodic and random schedules run the same way.
/// Messages for later rounds are buffered; stale, duplicate, foreign-run or malformed ones are
/// rejected with a log line and never mixed in.
public struct WorkerMachine {
    public let nonce: UInt64
    private let host: String
    private let processID: Int32
    private let requestedRank: Int?
    private let peakResidentBytes: () -> Int
    /// Shared-memory pages mapped (counted in the peak), for the summary.
    public var sharedResidentBytes: () -> Int = { 0 }
    /// Its proportional share of them, for the summary.
    public var sharedProportionalBytes: () -> Int = { 0 }

    public private(set) var rank: Int?
    public private(set) var configuration: RunConfiguration?
    public private(set) var runID: UInt64 = 0
    /// The local training: the trainer and the client's private side of personalization
    /// (Ditto's v, the additive local part, …).
    private var steps: LocalSteps?
    /// The worker's current model xᵢ (the push-sum numerator when push-sum runs).
    public private(set) var parameters: [Float] = []
    /// Push-sum weight wᵢ (1 when the rule is not push-sum).
    public var pushSumWeight: Double { (rule as? any PushSumWeighted)?.weight ?? 1 }
    /// Next round to complete (0-based).
    public private(set) var round = 0
    private var started = false
    private var trainedThisRound = false
    private var roundLoss = 0.0
    private var roundLearningRate = 0.0
    /// What this worker sent for the current round (its message: the pre-mix model for ATC and CTA).
    private var sentThisRound: Envelope?
    /// C-SGD's all-reduce: how it runs in this run (nil: plain gossip), the current round's, and
    /// messages that came for rounds (or the current round) before its all-reduce began.
    private var allReduceVariant: AllReduceRound.Variant?
    private var collective: AllReduceRound?
    private var earlyCollective: [Int: [Envelope]] = [:]
    /// The message of the last round this worker completed by all-reduce. A worker removed in the
    /// middle of an all-reduce can leave the survivors a round apart (those that got its chunks
    /// finished, the others never will); the ones behind then finish that round by gossip, which
    /// needs this message again (sent once, on the removal; the round is kept so that the others'
    /// replays of it are recognised and dropped quietly).
    private var lastAllReducedRound: Int?
    private var lastAllReducedMessage: Envelope?
    /// The algorithm as a value (nil before the shard is loaded, and in federated runs).
    private var rule: (any GossipRule)?
    /// The rule's messages: round → sender → envelope (its payload and body are the message).
    private var ruleMessages: [Int: [Int: Envelope]] = [:]
    /// This worker's view of the topology of nearby rounds.
    private var views: [Int: RoundView] = [:]
    /// Workers removed from the run after failures.
    public private(set) var removed: Set<Int> = []
    /// Evaluates this worker's own model on its own test split (honest per-client evaluation).
    private var clientEvaluator: Evaluator?
    /// The same model on the training examples set aside for validation (`clientValidationFraction`).
    private var clientValidationEvaluator: Evaluator?
    /// Coordinates that stay on this worker (personal layers; running statistics under the local
    /// batch-norm policy).
    private var personal: [Range<Int>] = []
    /// Federated: the global model this round started from (FedProx's anchor).
    private var federatedAnchor: [Float]?
    /// Rounds the coordinator has recorded (flow control).
    private var acknowledgedRounds = 0
    /// Rounds the coordinator has recorded, as far as this worker knows: no reader uses its models
    /// of those rounds any more (neighbours mix a round's models before they report the round; the
    /// coordinator reads its gathered ones before it records it).
    public var recordedRounds: Int { acknowledgedRounds }
    /// The next round is due but waits for the coordinator to catch up.
    private var roundDeferred = false
    /// Gossip mode: reports of completed rounds not sent yet. Rounds that carry nothing but the
    /// figures go to the coordinator a few at a time (`reportBatch`), in one message: a report a
    /// round was a quarter of a ring's messages.
    private var unsentReports: [WorkerMetrics] = []
    /// All rounds done and reported; waiting for the coordinator's final acknowledgement.
    private var awaitingRelease = false
    public private(set) var bytesSent = 0
    /// Bytes of reports sent only for the measurements (gossip-mode metrics, client evaluations).
    public private(set) var diagnosticBytesSent = 0
    public private(set) var rejectedMessages = 0
    /// Rounds (1-based) after which the coordinator asked for a checkpoint besides those by count.
    private var requestedCheckpoints: Set<Int> = []
    /// A resumed run's state for this worker, restored once the shard is loaded.
    private var resume: WorkerResume?

    /// Round t's neighbours and weights as seen from this worker.
    struct RoundView {
        var inNeighbors: [Int]
        var outNeighbors: [Int]
        var selfWeight: Double
        var weights: [Int: Double]
    }

    /// Increases whenever this worker's run moves (assignment, start, a round completed or a
    /// global model adopted, an acknowledgement that lets it go on): the peer timeout is about
    /// this, not about messages, which heartbeats keep coming.
    public var progress: Int { (isAssigned ? 1 : 0) + (started ? 1 : 0) + 2 * round + acknowledgedRounds }

    /// Whether the assignment arrived, without copying the configuration (`configuration != nil`
    /// and `guard let` both do, retaining every array in it; processes ask after every message).
    private var isAssigned: Bool {
        if case .some = configuration { return true }
        return false
    }

    /// Assigned but not yet released by the start barrier: it waits for the other workers to load
    /// their data, which the coordinator judges by their heartbeats (not by progress).
    public var isAtStartBarrier: Bool { isAssigned && !started }

    /// Waiting on the coordinator alone (flow control, the final acknowledgement, a federated
    /// global model): a slow coordinator (a long evaluation or final measurement) is alive as its
    /// heartbeats show, so these waits get a longer progress timeout than waits on neighbours.
    public var isWaitingOnCoordinator: Bool {
        guard isAssigned else { return false }
        return roundDeferred || awaitingRelease || (started && configuration?.federated != nil)
    }

    /// What this worker is waiting for, and from whom, for timeout messages.
    public var waitingOn: String {
        guard let configuration, let rank else { return "its assignment from the coordinator" }
        if !started { return "the start barrier (the coordinator's start message)" }
        if awaitingRelease { return "the coordinator's final acknowledgement" }
        if roundDeferred && checkpointDue(round) {
            return "the coordinator to write the checkpoint of round \(round)"
        }
        if roundDeferred {
            return "the coordinator to record round \(round + 1 - configuration.maxRoundsAhead) (flow control)"
        }
        if configuration.federated != nil { return "the server's global model for round \(round + 1)" }
        if !trainedThisRound { return "its own local steps of round \(round + 1)" }
        if let collective { return "round \(round + 1)'s \(collective.missing)" }
        let received = ruleMessages[round] ?? [:]
        let senders =
            rule?.exchangePeers(round: round)?.receiveFrom
            ?? configuration.topology.topology(atRound: round).inNeighbors(of: rank)
        let missing = senders.filter { received[$0] == nil }
        return "\(configuration.algorithm.rawValue) messages for round \(round + 1) from workers \(missing)"
    }

    /// The model xᵢ stands for, as the rule reads it (push-sum's de-biased zᵢ = xᵢ/wᵢ).
    public var model: [Float] { rule?.model(parameters) ?? parameters }

    private mutating func view(_ t: Int) -> RoundView {
        if let cached = views[t] { return cached }
        let topology = configuration!.topology.topology(atRound: t)
        let rank = self.rank!
        var weights: [Int: Double] = [:]
        var selfWeight = 0.0
        for entry in topology.mixing[rank] {
            if entry.node == rank { selfWeight = entry.weight } else { weights[entry.node] = entry.weight }
        }
        let view = RoundView(
            inNeighbors: topology.inNeighbors(of: rank), outNeighbors: topology.outNeighbors(of: rank),
            selfWeight: selfWeight, weights: weights)
        views[t] = view
        return view
    }

    /// What the shell found of the host's shared memory, reported at registration.
    private let sharedMemory: SharedMemoryReport?
    /// Scratch memory for the training steps, shared with the other workers that take turns on
    /// this thread (set by a process running several workers); nil: the trainer's own.
    public var trainingScratch: TrainingScratchPool?

    /// Makes the immutable snapshot of a model of a (1-based) round that is sent (set by the shell
    /// to its transport's `makePayload`, which may write it straight into shared memory); a plain
    /// copy by default.
    public var payloadMaker: (UnsafeBufferPointer<Float>, Int, PayloadReaders) -> FloatPayload = { values, _, _ in
        FloatPayload(copying: values)
    }

    /// A snapshot of `values`, a model of this worker's current round (or, after a round is
    /// complete, of that round).
    private func makePayload(_ values: [Float], round: Int, readers: PayloadReaders = .workers) -> FloatPayload {
        values.withUnsafeBufferPointer { payloadMaker($0, round, readers) }
    }

    public init(
        nonce: UInt64, host: String, processID: Int32, requestedRank: Int?, peakResidentBytes: @escaping () -> Int,
        sharedMemory: SharedMemoryReport? = nil
    ) {
        self.sharedMemory = sharedMemory
        self.nonce = nonce
        self.host = host
        self.processID = processID
        self.requestedRank = requestedRank
        self.peakResidentBytes = peakResidentBytes
    }

    /// First event: register with the coordinator (whose route the shell has set up).
    public mutating func onStart(localEndpoint: String) -> [WorkerDirective] {
        let registration = Registration(
            nonce: nonce, endpoint: localEndpoint, host: host, processID: processID, requestedRank: requestedRank,
            sharedMemory: sharedMemory)
        return [
            send(
                Envelope(header: header(.register, round: 0), body: Body.encode(registration)), to: .coordinator,
                diagnostic: true)
        ]
    }

    public mutating func onEnvelope(_ envelope: Envelope) -> [WorkerDirective] {
        let kind = envelope.header.kind
        // Before its assignment a worker knows no run id: nothing but the assignment that answers
        // its own registration (by nonce) is accepted, an abort with run id 0 included. A
        // heartbeat is let through, unread: the coordinator's come from a thread of their own over
        // another connection, so one can overtake this worker's assignment, and it asks nothing.
        if !isAssigned && kind == .heartbeat { return [] }
        if !isAssigned && kind != .assignment {
            return reject("\(kind) from sender \(envelope.header.sender) before this worker's assignment")
        }
        if kind != .assignment && envelope.header.runID != runID {
            return reject(
                "\(kind) from sender \(envelope.header.sender) carries run id \(envelope.header.runID), not this run's \(runID)"
            )
        }
        switch kind {
        case .assignment:
            guard configuration == nil else { return reject("a second assignment arrived") }
            do {
                let assignment = try Body.decode(Assignment.self, from: envelope)
                return onAssignment(assignment)
            } catch {
                // Garbage is not a reason to stop: a real assignment may still come.
                return reject("an assignment that does not decode: \(error)")
            }
        case .start:
            guard steps != nil, !started else { return reject("start before the shard was loaded, or twice") }
            started = true
            return beginRound()
        case .parameters:
            return onParameters(envelope)
        case .abort:
            return [.fail("coordinator aborted the run: \(String(decoding: envelope.body, as: UTF8.self))")]
        case .acknowledge:
            return onAcknowledge(Int(envelope.header.round))
        case .heartbeat:
            return []
        case .globalModel:
            return onGlobalModel(envelope)
        case .membership:
            do {
                return onMembership(try Body.decode(MembershipChange.self, from: envelope))
            } catch {
                return reject("\(error)")
            }
        case .checkpointRequest:
            return onCheckpointRequest(Int(envelope.header.round))
        case .reduceScatter:
            return onCollective(envelope, phase: .reduceScatter)
        case .allGather:
            return onCollective(envelope, phase: .allGather)
        case .allReduceResult:
            return onCollective(envelope, phase: .result)
        case .allReduceContribution:
            return onCollective(envelope, phase: .contribution)
        case .allReduceDirectory:
            return onCollective(envelope, phase: .directory)
        case .register, .ready, .metrics, .finished, .clientEvaluation, .checkpointState:
            return reject("workers do not accept \(kind) messages")
        }
    }

    private mutating func onAssignment(_ assignment: Assignment) -> [WorkerDirective] {
        guard assignment.nonce == nonce else {
            return reject("an assignment that does not answer this worker's registration (nonce mismatch)")
        }
        let configuration = assignment.configuration
        do { try configuration.validate() } catch {
            return [.fail("the coordinator's configuration is invalid: \(error)")]
        }
        guard (0..<configuration.workers).contains(assignment.rank),
            assignment.workerEndpoints.count == configuration.workers
        else {
            return reject(
                "invalid assignment: rank \(assignment.rank) of \(configuration.workers), \(assignment.workerEndpoints.count) endpoints"
            )
        }
        if let resume = assignment.resume {
            guard (0..<configuration.rounds).contains(resume.round) else {
                return [.fail("the coordinator's resume state is for round \(resume.round) of \(configuration.rounds)")]
            }
            self.resume = resume
        }
        self.configuration = configuration
        rank = assignment.rank
        runID = assignment.runID
        // Over shared memory every worker reads its chunk in place (direct); over ZeroMQ frames
        // the chunks travel along the ring. Both sum in the same order, so the bits agree.
        allReduceVariant = configuration.usesAllReduce ? (assignment.sharedPayloads != nil ? .direct : .ring) : nil
        // A fixed graph needs routes to its out-neighbours only; a changing one may use any peer.
        let peers: [Int]
        if case .fixed(let topology) = configuration.topology {
            peers = topology.outNeighbors(of: assignment.rank)
        } else {
            peers = (0..<configuration.workers).filter { $0 != assignment.rank }
        }
        var directives: [WorkerDirective] =
            assignment.sharedPayloads.map {
                [.shareModels($0, runID: assignment.runID, rank: assignment.rank)]
            } ?? []
        directives += peers.map { .connect(.worker($0), endpoint: assignment.workerEndpoints[$0]) }
        directives.append(.loadShard(rank: assignment.rank, configuration: configuration))
        return directives
    }

    /// The shell loaded the shard (and, with per-client evaluation, this worker's own test split).
    public mutating func onShardLoaded(_ shard: Dataset, clientTest: Dataset? = nil, clientValidation: Dataset? = nil)
        -> [WorkerDirective]
    {
        guard let configuration, let rank else { return [.fail("shard loaded before assignment")] }
        let network = Network(spec: configuration.model)
        guard shard.featureCount == network.inputWidth else {
            return [
                .fail(
                    "data has \(shard.featureCount) features per example but the model \(configuration.model) takes \(network.inputWidth)"
                )
            ]
        }
        guard shard.classCount <= network.classCount else {
            return [
                .fail(
                    "data has \(shard.classCount) classes but the model \(configuration.model) outputs \(network.classCount)"
                )
            ]
        }
        // Every worker starts from the same x₀ (seeded), as in the D-SGD literature.
        parameters = network.initialParameters(seed: configuration.seed)
        personal = configuration.localRanges(in: network.layout)
        clientEvaluator = clientTest.map { Evaluator(network: network, dataset: $0) }
        clientValidationEvaluator = clientValidation.map { Evaluator(network: network, dataset: $0) }
        if configuration.federated == nil {
            rule = configuration.algorithm.makeRule(
                context: GossipRuleContext(
                    rank: rank, workers: configuration.workers, parameterCount: network.parameterCount,
                    seed: configuration.seed, topology: configuration.topology, privateRanges: personal),
                settings: configuration.gossipRule ?? GossipRuleSettings())
        }
        let trainer = LocalTrainer(
            network: network, shard: shard, batchSize: configuration.batchSize,
            localSteps: configuration.localSteps(forExamples: shard.count),
            optimizer: configuration.optimizer, seed: configuration.seed, rank: rank,
            batchNorm: configuration.batchNorm,
            rounds: configuration.rounds,
            scratch: trainingScratch?.scratch(network: network, batchSize: configuration.batchSize))
        let personalizer = PersonalTrainer(
            settings: configuration.personalization, network: network, shard: shard,
            batchSize: configuration.batchSize, optimizer: configuration.optimizer, seed: configuration.seed,
            rank: rank, batchNorm: configuration.batchNorm,
            localSteps: configuration.localSteps(forExamples: shard.count),
            head: configuration.personalRanges(in: network.layout), initial: parameters, rounds: configuration.rounds)
        steps = LocalSteps(trainer: trainer, personalizer: personalizer)
        if let resume {
            self.resume = nil
            do { try restore(resume) } catch {
                return [.fail("cannot resume from the checkpoint of round \(resume.round): \(error)")]
            }
        }
        return [send(Envelope(header: header(.ready, round: 0)), to: .coordinator, diagnostic: true)]
    }

    /// Workers were removed: adopt the survivors' topology for every round not yet completed, drop
    /// the removed workers' models, and send this round's model to any new out-neighbour.
    private mutating func onMembership(_ change: MembershipChange) -> [WorkerDirective] {
        guard var configuration, let rank else { return reject("membership change before assignment") }
        if change.removed.contains(rank) { return [.fail("removed from the run: \(change.reason)")] }
        if let rule, !type(of: rule).survivesRemovals {
            return [
                .fail(
                    "removed workers \(change.removed): \(configuration.algorithm.rawValue) cannot go on without them")
            ]
        }
        // A round that was being averaged by all-reduce is finished by gossip among the survivors:
        // every survivor sends its model again, to every new out-neighbour.
        let previousOut = collective == nil ? view(round).outNeighbors : []
        collective = nil
        earlyCollective = [:]
        removed.formUnion(change.removed)
        configuration.topology = change.topology
        self.configuration = configuration
        views = [:]
        for key in ruleMessages.keys { for dead in change.removed { ruleMessages[key]?.removeValue(forKey: dead) } }
        var directives: [WorkerDirective] = [
            .log("worker \(rank): workers \(change.removed) removed (\(change.reason)); continuing")
        ]
        if let finished = lastAllReducedRound, let message = lastAllReducedMessage, finished == round - 1 {
            // Survivors still in that round need this worker's model of it; those that finished it
            // too drop the replay.
            for peer in view(finished).outNeighbors { directives.append(send(message, to: .worker(peer))) }
        }
        lastAllReducedMessage = nil
        if let sent = sentThisRound {
            for peer in view(round).outNeighbors where !previousOut.contains(peer) {
                directives.append(send(sent, to: .worker(peer)))
            }
        }
        return directives + combineIfReady()
    }

    private mutating func onAcknowledge(_ recorded: Int) -> [WorkerDirective] {
        guard let configuration else { return reject("acknowledgement before assignment") }
        acknowledgedRounds = max(acknowledgedRounds, recorded)
        if awaitingRelease && acknowledgedRounds > configuration.rounds { return [.finish] }
        if roundDeferred { return beginRound() }
        return []
    }

    private mutating func beginRound() -> [WorkerDirective] {
        guard let configuration else { return [] }
        // After a checkpoint's round nothing of the next round starts (no message, no step) until
        // the coordinator has written the checkpoint: the state it holds is the whole run's.
        if checkpointDue(round) && acknowledgedRounds < round {
            roundDeferred = true
            return []
        }
        roundDeferred = false
        if let federated = configuration.federated {
            // Federated: train only when sampled, then wait for the server's global model.
            let sampled = federated.aggregator.sampledClients(
                round: round, workers: configuration.workers, seed: configuration.seed)
            if sampled.contains(rank!) {
                federatedAnchor = parameters
                return [.trainLocally]
            }
            federatedAnchor = nil
            return [federatedReport(sampled: false)]
        }
        // Completed rounds = `round`; stay within maxRoundsAhead of what the coordinator recorded.
        guard round - acknowledgedRounds < configuration.maxRoundsAhead else {
            roundDeferred = true
            return []
        }
        roundDeferred = false
        if let rule, type(of: rule).sendsBeforeLocalUpdate { return sendMessage() + [.trainLocally] }
        return [.trainLocally]
    }

    /// The shell's turn to run this round's local steps.
    public mutating func onTrainTurn() -> [WorkerDirective] {
        guard let configuration, var steps, !trainedThisRound else { return [] }
        // Moved out while they train (put back below), so their buffers (optimizer state, personal
        // models) are mutated in place rather than copied on write.
        self.steps = nil
        if let federated = configuration.federated {
            let proximal = federatedAnchor.flatMap { federated.aggregator.proximalTerm(anchor: $0) }
            if federated.clientMomentum == .reset { steps.trainer.resetOptimizerState() }
            (roundLoss, roundLearningRate) = steps.train(&parameters, round: round, proximal: proximal)
            self.steps = steps
            if !roundLoss.isFinite { return [.fail("training diverged: round \(round + 1) loss is \(roundLoss)")] }
            return [federatedReport(sampled: true)]
        }
        var rule = self.rule!
        self.rule = nil
        let (loss, learningRate) = rule.localUpdate(&parameters, steps: &steps, round: round)
        self.rule = rule
        self.steps = steps
        roundLoss = loss
        roundLearningRate = learningRate
        trainedThisRound = true
        var directives: [WorkerDirective] = []
        if !loss.isFinite { return [.fail("training diverged: round \(round + 1) loss is \(loss)")] }
        if !type(of: rule).sendsBeforeLocalUpdate { directives += sendMessage() }
        return directives + combineIfReady()
    }

    /// Sends this round's message (one snapshot for every peer) and keeps it as `sentThisRound`.
    /// Private coordinates never leave the worker: a dense message holds zeros there (neighbours
    /// never mix them, and the worker restores its own after mixing). When the round is an exact
    /// average over all workers, the message goes into the all-reduce instead.
    private mutating func sendMessage() -> [WorkerDirective] {
        var rule = self.rule!
        self.rule = nil
        var values = parameters
        for range in personal { for i in range { values[i] = 0 } }
        let message = rule.message(values, round: round)
        self.rule = rule
        let envelope: Envelope
        switch message {
        case .dense(let values, let body):
            envelope = Envelope(
                header: header(.parameters, round: round), body: body, payload: makePayload(values, round: round + 1))
        case .encoded(let bytes):
            envelope = Envelope(header: header(.parameters, round: round), body: bytes)
        }
        sentThisRound = envelope
        if let variant = allReduceVariant, removed.isEmpty, let snapshot = envelope.payload {
            var collective = AllReduceRound(
                variant: variant, rank: rank!, workers: configuration!.workers, count: snapshot.count)
            let outgoing = collective.start(own: snapshot) { makePayload($0, round: round + 1) }
            self.collective = collective
            var directives = collectiveSends(outgoing)
            for envelope in earlyCollective.removeValue(forKey: round) ?? [] {
                directives += onCollective(
                    envelope, phase: AllReduceRound.Phase(kind: envelope.header.kind)!)
            }
            return directives
        }
        return recipients(round).map { send(envelope, to: .worker($0)) }
    }

    private mutating func recipients(_ t: Int) -> [Int] {
        rule!.exchangePeers(round: t)?.sendTo ?? view(t).outNeighbors
    }

    private mutating func senders(_ t: Int) -> [Int] {
        rule!.exchangePeers(round: t)?.receiveFrom ?? view(t).inNeighbors
    }

    /// A gossip message: checked (round, sender, the rule's own check), buffered, combined when
    /// the round's are all in. Messages from any live worker are buffered (a membership change can
    /// make it an in-neighbour for this round); only the round's senders are combined.
    private mutating func onParameters(_ envelope: Envelope) -> [WorkerDirective] {
        guard let configuration, let rule else {
            return reject(
                configuration?.federated != nil
                    ? "parameters from a peer in a federated run (clients exchange models with the server only)"
                    : "parameters before this worker's shard was loaded")
        }
        let sender = Int(envelope.header.sender)
        if let finished = lastAllReducedRound, envelope.header.round == Int64(finished), finished < round,
            (0..<configuration.workers).contains(sender), !removed.contains(sender)
        {
            return []  // a survivor's replay of a round this worker finished by all-reduce
        }
        // The header's round is any Int64 a peer sends: range-check it before any arithmetic.
        guard envelope.header.round >= Int64(round), envelope.header.round < Int64(configuration.rounds) else {
            return reject(
                "parameters from worker \(sender) for 0-based round \(envelope.header.round), but this worker is at round \(round + 1) of \(configuration.rounds)"
            )
        }
        let messageRound = Int(envelope.header.round)
        guard (0..<configuration.workers).contains(sender), sender != rank, !removed.contains(sender) else {
            return reject("parameters from worker \(sender), which is not a live peer")
        }
        guard ruleMessages[messageRound]?[sender] == nil else {
            return reject("duplicate parameters from worker \(sender) for round \(messageRound + 1)")
        }
        if let payload = envelope.payload, !payload.isFinite {
            return reject("parameters from worker \(sender) for round \(messageRound + 1) contain NaN or Inf")
        }
        if let problem = withExtendedLifetime(envelope, { rule.problem(with: Self.gossip(envelope)) }) {
            return reject("parameters from worker \(sender) for round \(messageRound + 1): \(problem)")
        }
        ruleMessages[messageRound, default: [:]][sender] = envelope
        return messageRound == round ? combineIfReady() : []
    }

    /// A message of C-SGD's all-reduce: checked, buffered until this worker's own all-reduce of
    /// that round has begun, then taken.
    private mutating func onCollective(_ envelope: Envelope, phase: AllReduceRound.Phase) -> [WorkerDirective] {
        guard let configuration, let rank else { return reject("all-reduce before assignment") }
        guard allReduceVariant != nil else { return reject("an all-reduce message in a run that averages by gossip") }
        let sender = Int(envelope.header.sender)
        if !removed.isEmpty, (0..<configuration.workers).contains(sender), !removed.contains(sender) {
            return []  // a survivor's part of an all-reduce the removal abandoned (gossip from now on)
        }
        guard (0..<configuration.workers).contains(sender), sender != rank else {
            return reject("all-reduce message from worker \(sender), which is not a peer")
        }
        guard envelope.header.round >= Int64(round), envelope.header.round < Int64(configuration.rounds),
            envelope.header.round <= Int64(round + configuration.maxRoundsAhead + 1)
        else {
            return reject(
                "all-reduce message from worker \(sender) for 0-based round \(envelope.header.round) at round \(round + 1)"
            )
        }
        guard envelope.body.count == 8, (envelope.payload != nil) != AllReduceRound.passesOn(phase) else {
            return reject("all-reduce message from worker \(sender) without its chunk and step, or its payload")
        }
        let chunk = Int(UInt32(littleEndian: envelope.body.withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) }))
        let step = Int(
            UInt32(littleEndian: envelope.body.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 4, as: UInt32.self) })
        )
        let messageRound = Int(envelope.header.round)
        guard messageRound == round, var collective = self.collective, collective.own != nil else {
            // Early: at most the messages a round can bring (2(n − 1) per round, ring or direct).
            guard (earlyCollective[messageRound]?.count ?? 0) < 2 * configuration.workers else {
                return reject("more all-reduce messages for round \(messageRound + 1) than a round has")
            }
            earlyCollective[messageRound, default: []].append(envelope)
            return []
        }
        let payloads: [FloatPayload]
        if AllReduceRound.passesOn(phase) {
            let publishers = envelope.forwarded.map { Int($0.publisher) }
            let expected = AllReduceRound.directoryPublishers(for: rank, workers: configuration.workers)
            guard publishers == expected else {
                return reject(
                    "round \(round + 1) from worker \(sender): a \(phase) of the payloads of workers \(publishers), not \(expected)"
                )
            }
            payloads = envelope.forwarded.map(\.payload)
        } else {
            payloads = [envelope.payload!]
        }
        if let problem = collective.problem(
            phase: phase, chunk: chunk, step: step, sender: sender, counts: payloads.map(\.count))
        {
            return reject("round \(round + 1) from worker \(sender): \(problem)")
        }
        guard payloads.allSatisfy(\.isFinite) else {
            return reject("all-reduce chunk from worker \(sender) for round \(round + 1) contains NaN or Inf")
        }
        // Moved out while it takes the message (put back below): its result is not copied on write.
        self.collective = nil
        let outgoing = collective.receive(phase: phase, chunk: chunk, step: step, sender: sender, payloads: payloads) {
            makePayload($0, round: round + 1)
        }
        self.collective = collective
        return collectiveSends(outgoing) + combineIfReady()
    }

    private mutating func collectiveSends(_ outgoing: [AllReduceRound.Outgoing]) -> [WorkerDirective] {
        outgoing.map { message in
            var body: [UInt8] = []
            withUnsafeBytes(of: UInt32(message.chunk).littleEndian) { body.append(contentsOf: $0) }
            withUnsafeBytes(of: UInt32(message.step).littleEndian) { body.append(contentsOf: $0) }
            let kind = message.phase.kind
            if AllReduceRound.passesOn(message.phase) {
                let publishers = AllReduceRound.directoryPublishers(for: message.to, workers: configuration!.workers)
                let forwarded = zip(publishers, message.payloads).map {
                    ForwardedPayload(publisher: Int32($0), payload: $1)
                }
                return send(
                    Envelope(header: header(kind, round: round), body: body, forwarded: forwarded),
                    to: .worker(message.to))
            }
            return send(
                Envelope(header: header(kind, round: round), body: body, payload: message.payloads[0]),
                to: .worker(message.to))
        }
    }

    /// Combines the round once its messages are in (every sender's, or the all-reduce's average),
    /// the private coordinates kept as they were.
    private mutating func combineIfReady() -> [WorkerDirective] {
        guard let configuration, trainedThisRound else { return [] }
        if let collective {
            guard collective.isComplete else { return [] }
            let kept = personal.map { Array(parameters[$0]) }
            var rule = self.rule!
            self.rule = nil
            let sent = sentThisRound!.payload!
            withExtendedLifetime((collective, sent)) {
                rule.combine(&parameters, average: collective.averageChunks, sent: sent.buffer, round: round)
            }
            self.rule = rule
            for (range, values) in zip(personal, kept) { parameters.replaceSubrange(range, with: values) }
            if let damage = collective.read.lazy.compactMap({ $0.damage() }).first {
                return [.fail("round \(round + 1): \(damage)")]
            }
            self.collective = nil
            lastAllReducedRound = round
            lastAllReducedMessage = sentThisRound
            return completeRound(configuration)
        }
        let received = ruleMessages[round] ?? [:]
        let senders = senders(round)
        guard senders.allSatisfy({ received[$0] != nil }) else { return [] }
        let messages = Dictionary(
            uniqueKeysWithValues: senders.map { sender in (sender, Self.gossip(received[sender]!)) })
        // The round's row of W from the cached view, neighbours in ascending order.
        let view = view(round)
        let row = MixingRow(
            selfWeight: view.selfWeight,
            neighbors: view.inNeighbors.map { MixingRow.Neighbor(rank: $0, weight: view.weights[$0]!) })
        let sent = sentThisRound!
        let kept = personal.map { Array(parameters[$0]) }
        var rule = self.rule!
        self.rule = nil
        withExtendedLifetime((received, sent)) {
            rule.combine(&parameters, row: row, received: messages, sent: Self.gossip(sent), round: round)
        }
        self.rule = rule
        for (range, values) in zip(personal, kept) { parameters.replaceSubrange(range, with: values) }
        // Messages read in place from a sender's shared memory: void if the sender rewrote them.
        for sender in senders {
            if let damage = received[sender]!.payload?.damage() { return [.fail("round \(round + 1): \(damage)")] }
        }
        return completeRound(configuration)
    }

    /// A message as a rule reads it (dense values in place; valid while the envelope lives).
    private static func gossip(_ envelope: Envelope) -> ReceivedGossip {
        envelope.payload.map { .dense($0.buffer, body: envelope.body) } ?? .encoded(envelope.body)
    }

    /// The round's mixing is done: report it and begin the next.
    private mutating func completeRound(_ configuration: RunConfiguration) -> [WorkerDirective] {
        views.removeValue(forKey: round)
        ruleMessages.removeValue(forKey: round)
        // The round is over: until the next one begins (which flow control may defer), nothing may
        // complete it, however many neighbour models arrive for it.
        trainedThisRound = false
        sentThisRound = nil
        round += 1
        var directives = reportRound(configuration) + evaluateForClient(configuration)
        if round == configuration.rounds {
            directives.append(finishedMessage())
            // Exit only once the coordinator has everything (its final acknowledgement): leaving
            // earlier could drop queued messages when the socket's linger runs out.
            awaitingRelease = true
            return directives
        }
        return directives + checkpointIfDue() + beginRound()
    }

    /// The last report: this worker's summary (memory, bytes, shard size).
    private mutating func finishedMessage() -> WorkerDirective {
        var summary = WorkerSummary(
            rank: rank!, peakResidentBytes: peakResidentBytes(), sharedResidentBytes: sharedResidentBytes(),
            bytesSent: bytesSent, shardSize: steps?.trainer.sampler.shard.count ?? 0)
        summary.sharedProportionalBytes = sharedProportionalBytes()
        return send(Envelope(header: header(.finished, round: round), body: Body.encode(summary)), to: .coordinator)
    }

    /// Federated: this round's report to the server; a sampled client's carries its model (personal
    /// slices zeroed: they never leave the worker).
    private mutating func federatedReport(sampled: Bool) -> WorkerDirective {
        var payload: FloatPayload?
        if sampled {
            var values = parameters
            for range in personal { for i in range { values[i] = 0 } }
            payload = makePayload(values, round: round + 1, readers: .coordinator)
            // The upload is this round's traffic: counted before the report that states the total.
            bytesSent += MessageHeader.byteCount + 4 * payload!.wireSlotCount
        }
        var metrics = WorkerMetrics(
            round: round + 1, trainLoss: sampled ? roundLoss : 0, learningRate: roundLearningRate, bytesSent: bytesSent,
            epoch: steps?.trainer.sampler.epoch ?? 0)
        metrics.sampled = sampled
        metrics.shardSize = steps?.trainer.sampler.shard.count
        metrics.additiveLambda = sampled ? steps?.personalizer.report.lambda : nil
        metrics.additiveMu = sampled ? steps?.personalizer.report.mu : nil
        metrics.additiveGlobalZeroFraction = sampled ? steps?.personalizer.report.zeroFraction : nil
        let envelope = Envelope(
            header: header(.metrics, round: round + 1), body: metrics.encoded, payload: payload)
        diagnosticBytesSent += envelope.body.count + (payload == nil ? MessageHeader.byteCount : 0)
        return .send(envelope, to: .coordinator)
    }

    /// Federated: the server's global model after round `round` (1-based).
    private mutating func onGlobalModel(_ envelope: Envelope) -> [WorkerDirective] {
        guard let configuration, configuration.federated != nil else {
            return reject("a global model outside federated mode")
        }
        guard Int(envelope.header.round) == round + 1 else {
            return reject("global model for round \(envelope.header.round) while at round \(round + 1)")
        }
        guard let payload = envelope.payload, payload.count == parameters.count, payload.isFinite else {
            return reject("global model of the wrong size or with NaN/Inf")
        }
        let kept = personal.map { Array(parameters[$0]) }
        parameters = payload.array
        if let damage = payload.damage() { return [.fail("global model of round \(round + 1): \(damage)")] }
        for (range, values) in zip(personal, kept) { parameters.replaceSubrange(range, with: values) }
        round += 1
        // The client's model after this round: the global model with its own personal slices.
        let evaluation = evaluateForClient(configuration)
        if round == configuration.rounds {
            awaitingRelease = true
            return evaluation + [finishedMessage()]
        }
        return evaluation + checkpointIfDue() + beginRound()
    }

    /// How many rounds' reports a worker may hold before it sends them: half the flow-control
    /// window. The coordinator records a round once every worker reported it and acknowledges a
    /// quarter window at a time, so the slowest worker, which has sent every report older than
    /// its last `reportBatch − 1` rounds, is never held by flow control: what it holds back
    /// cannot stall the run.
    static func reportBatch(maxRoundsAhead: Int) -> Int { max(1, maxRoundsAhead / 2) }

    /// This round's report, sent now, or kept to go with the next ones. It goes now (with any
    /// kept) when the round carries a model for the coordinator, is evaluated, is checkpointed or
    /// is the last, when the batch is full, and when flow control is about to make this worker
    /// wait for the coordinator (which may be waiting for these reports).
    private mutating func reportRound(_ configuration: RunConfiguration) -> [WorkerDirective] {
        var metrics = WorkerMetrics(
            round: round, trainLoss: roundLoss, learningRate: roundLearningRate, bytesSent: bytesSent,
            epoch: steps?.trainer.sampler.epoch ?? 0)
        metrics.additiveLambda = steps?.personalizer.report.lambda
        metrics.additiveMu = steps?.personalizer.report.mu
        metrics.additiveGlobalZeroFraction = steps?.personalizer.report.zeroFraction
        unsentReports.append(metrics)
        let gathers = configuration.gathersParameters(afterRound: round)
        let sendsNow =
            gathers || configuration.evaluates(afterRound: round) || checkpointDue(round)
            || round == configuration.rounds
            || unsentReports.count >= Self.reportBatch(maxRoundsAhead: configuration.maxRoundsAhead)
            || round - acknowledgedRounds >= configuration.maxRoundsAhead
        guard sendsNow else { return [] }
        let payload = gathers ? makePayload(model, round: round, readers: .coordinator) : nil
        let body = WorkerMetrics.encoded(batch: unsentReports)
        unsentReports.removeAll(keepingCapacity: true)
        // Gossip mode: the report (and the model it carries on metric rounds) is diagnostics, not
        // the algorithm's traffic, so it is not counted in bytesSent.
        return [
            send(
                Envelope(header: header(.metrics, round: round), body: body, payload: payload), to: .coordinator,
                diagnostic: true)
        ]
    }

    /// After an evaluation round: this worker's own model on its own test split, to the coordinator.
    private mutating func evaluateForClient(_ configuration: RunConfiguration) -> [WorkerDirective] {
        guard let clientEvaluator, configuration.evaluates(afterRound: round) else { return [] }
        let model = personalizedModel()
        let result = model.withUnsafeBufferPointer { clientEvaluator.evaluate($0) }
        var evaluation = ClientEvaluation(
            round: round, accuracy: result.accuracy, loss: result.loss, examples: clientEvaluator.dataset.count,
            trainingExamples: steps?.trainer.sampler.shard.count ?? 0)
        if let clientValidationEvaluator {
            let validation = model.withUnsafeBufferPointer { clientValidationEvaluator.evaluate($0) }
            evaluation.validationAccuracy = validation.accuracy
            evaluation.validationLoss = validation.loss
            evaluation.validationExamples = clientValidationEvaluator.dataset.count
        }
        return [
            send(
                Envelope(header: header(.clientEvaluation, round: round), body: Body.encode(evaluation)),
                to: .coordinator, diagnostic: true)
        ]
    }

    /// The private side of personalization (Ditto's and APFL's v, the additive local part), for
    /// tests and dumps; it is never sent.
    public var personalPart: [Float]? { steps?.personalizer.personal }
    /// APFL's learned mixture weight α (for tests and dumps).
    public var apflAlpha: Double? { steps?.personalizer.report.alpha }

    /// The model this client would deploy: its parameters, personal slices included, as its
    /// personalization algorithm turns them into a model (fine-tuned, Ditto's v, APFL's mixture,
    /// global + local).
    private mutating func personalizedModel() -> [Float] {
        guard var steps else { return parameters }
        defer { self.steps = steps }
        return steps.personalizer.deployed(parameters)
    }

    /// Whether the run stops for a checkpoint after `completed` rounds.
    private func checkpointDue(_ completed: Int) -> Bool {
        guard let configuration, completed > 0, completed < configuration.rounds else { return false }
        return configuration.checkpointsByCount(afterRound: completed) || requestedCheckpoints.contains(completed)
    }

    /// After a checkpoint's round: this worker's state, to the coordinator, which writes the
    /// checkpoint once it has every worker's and acknowledges the round only then.
    private mutating func checkpointIfDue() -> [WorkerDirective] {
        guard checkpointDue(round) else { return [] }
        requestedCheckpoints = requestedCheckpoints.filter { $0 > round }
        return [
            send(
                Envelope(header: header(.checkpointState, round: round), body: checkpointState()), to: .coordinator,
                diagnostic: true)
        ]
    }

    /// The coordinator's wall-time trigger: a checkpoint after round `completed` as well. It picks
    /// a round this worker cannot have begun (beyond flow control's reach when it asked).
    private mutating func onCheckpointRequest(_ completed: Int) -> [WorkerDirective] {
        guard let configuration, completed > round, completed < configuration.rounds else {
            return reject("a checkpoint request for round \(completed) at round \(round + 1)")
        }
        requestedCheckpoints.insert(completed)
        return []
    }

    /// Everything a bit-exact continuation needs of this worker after `round` rounds: the
    /// parameters, the rule's state (push-sum weight, CHOCO-SGD's copies, trackers), the local
    /// training's (data order and position, every random stream, optimizer state) and the private
    /// side's (Ditto's and APFL's v, α, the additive local part), and the byte counters.
    public func checkpointState() -> [UInt8] {
        var writer = StateWriter()
        writer.section("worker")
        writer.write(rank ?? -1)
        writer.write(round)
        writer.write(bytesSent)
        writer.write(diagnosticBytesSent)
        writer.write(parameters)
        writer.write(rule != nil)
        rule?.save(to: &writer)
        writer.write(steps != nil)
        steps?.save(to: &writer)
        return writer.bytes
    }

    /// Puts back what `checkpointState` wrote (into a worker built from the same configuration).
    private mutating func restore(_ resume: WorkerResume) throws(StateArchiveError) {
        var reader = StateReader(Array(resume.state))
        try reader.expectSection("worker")
        let savedRank = try reader.readInt()
        guard savedRank == rank else {
            throw StateArchiveError("the state is worker \(savedRank)'s, not worker \(rank ?? -1)'s")
        }
        let savedRound = try reader.readInt()
        guard savedRound == resume.round else {
            throw StateArchiveError("the state is of round \(savedRound), the checkpoint's is \(resume.round)")
        }
        bytesSent = try reader.readInt()
        diagnosticBytesSent = try reader.readInt()
        parameters = try reader.readFloats(count: parameters.count, "the parameters")
        guard try reader.readBool() == (rule != nil) else {
            throw StateArchiveError("the state's algorithm and this run's differ (gossip and federated)")
        }
        try rule?.restore(from: &reader)
        guard try reader.readBool() == (steps != nil) else {
            throw StateArchiveError("the state has no local training")
        }
        try steps?.restore(from: &reader)
        guard reader.isAtEnd else {
            throw StateArchiveError(
                "\(Array(resume.state).count - reader.offset) bytes left over after the worker's state")
        }
        round = savedRound
        acknowledgedRounds = savedRound
    }

    public func heartbeatMessage() -> Envelope { Envelope(header: header(.heartbeat, round: round)) }

    /// The message that tells the coordinator this worker is giving up.
    public func abortMessage(reason: String) -> Envelope {
        Envelope(header: header(.abort, round: round), body: Array(reason.utf8))
    }

    private func header(_ kind: MessageKind, round: Int) -> MessageHeader {
        MessageHeader(kind: kind, runID: runID, round: Int64(round), sender: Int32(rank ?? -1))
    }

    /// Sends, counting the bytes: the algorithm's traffic (gossip, federated uploads) in
    /// `bytesSent`; set-up, heartbeats and reports that exist only for the measurements in
    /// `diagnosticBytesSent`.
    private mutating func send(_ envelope: Envelope, to peer: Peer, diagnostic: Bool = false) -> WorkerDirective {
        if diagnostic {
            diagnosticBytesSent += envelope.estimatedWireBytes
        } else {
            bytesSent += envelope.estimatedWireBytes
        }
        return .send(envelope, to: peer)
    }

    private mutating func reject(_ reason: String) -> [WorkerDirective] {
        rejectedMessages += 1
        return [.log("worker \(rank.map(String.init) ?? "?"): rejected: \(reason)")]
    }
}
