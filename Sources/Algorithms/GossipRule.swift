import LearningCore
import Topologies

/// What one gossip message of a rule carries when it is sent.
public enum GossipMessage {
    /// `vectorsPerMessage` model-sized vectors, concatenated (travels as the envelope's payload,
    /// through shared memory between processes on one host), with a few bytes of the rule's own
    /// beside them (push-sum's weight; empty for most rules).
    case dense([Float], body: [UInt8] = [])
    /// Encoded bytes (a compressed vector; travels as the envelope's body).
    case encoded([UInt8])
}

/// A received message as a rule reads it: dense values (possibly in place in the sender's
/// shared memory, valid only during the call) with their body, or the encoded bytes.
public enum ReceivedGossip {
    case dense(UnsafeBufferPointer<Float>, body: [UInt8])
    case encoded([UInt8])

    /// The dense values, or nil for an encoded message.
    public var values: UnsafeBufferPointer<Float>? {
        if case .dense(let values, _) = self { values } else { nil }
    }
}

/// Round t's mixing weights as worker i sees them: Wᵢᵢ and the in-neighbours' Wᵢⱼ (in the order
/// the worker mixes them). Weights are the topology's Float64 values; models mix in Float32.
public struct MixingRow: Sendable, Equatable {
    public var selfWeight: Double
    public var neighbors: [Neighbor]

    public struct Neighbor: Sendable, Equatable {
        public var rank: Int
        public var weight: Double
        public init(rank: Int, weight: Double) {
            self.rank = rank
            self.weight = weight
        }
    }

    public init(selfWeight: Double, neighbors: [Neighbor]) {
        self.selfWeight = selfWeight
        self.neighbors = neighbors
    }
}

/// A decentralized algorithm's round as a value, in the spirit of optax's (init, update) pairs:
/// the worker machine keeps rounds, flow control, buffering and messaging, and asks the rule
/// what to compute, what to send and how to combine what came back. A round t of worker i:
/// 1. `localUpdate` (the rule's computation on xᵢ with the worker's local steps);
/// 2. `message` to every peer of `exchangePeers` (the round's out-neighbours by default) — before
///    step 1 when `sendsBeforeLocalUpdate` (the models travel while the worker trains);
/// 3. once a message from every receiving peer is in, `combine` with round t's row of W; or,
///    when the round is an exact average over all workers (C-SGD) and the rule
///    `combinesAverages`, the all-reduce's average stands for the neighbours' messages.
///
/// Every worker's rule is built from the same configuration, so what a sender derives from its
/// own message (CHOCO-SGD's public copy) is what its receivers derive from it, bit for bit.
///
/// A rule is `Checkpointable`: between rounds, its state (push-sum's weight, CHOCO-SGD's public
/// copies and stream, gradient tracking's tracker) is all a checkpoint needs of it.
public protocol GossipRule: Checkpointable {
    /// A worker's rule at the start of a run (every worker's built from the same settings).
    init(context: GossipRuleContext, settings: GossipRuleSettings)
    /// Model-sized vectors in one dense message (1; 2 for gradient tracking's x and y).
    static var vectorsPerMessage: Int { get }
    /// Whether round t's message is made before round t's local update (CTA) rather than after.
    static var sendsBeforeLocalUpdate: Bool { get }
    /// Whether `combine(_:average:sent:round:)` may replace the neighbours' messages by their
    /// exact average when W is the uniform complete graph (the all-reduce of C-SGD).
    static var combinesAverages: Bool { get }
    /// Whether the rule can go on when workers are removed mid-run (its state is the round's
    /// only); a rule that keeps state about its peers cannot.
    static var survivesRemovals: Bool { get }
    /// Peers this worker sends to and hears from in round t when they are not the round's out-
    /// and in-neighbours (CHOCO-SGD on a changing graph: every peer whose public copy it keeps).
    func exchangePeers(round: Int) -> (sendTo: [Int], receiveFrom: [Int])?
    /// Why a received message cannot be used (wrong length, malformed encoding), or nil.
    func problem(with message: ReceivedGossip) -> String?
    /// The rule's local computation of round t (0-based) on x; returns the mean mini-batch loss
    /// and the learning rate it used.
    mutating func localUpdate(_ x: inout [Float], steps: inout LocalSteps, round: Int) -> (
        meanLoss: Double, learningRate: Double
    )
    /// Round t's message.
    mutating func message(_ x: [Float], round: Int) -> GossipMessage
    /// x ← the round's combination, from every receiving peer's message; `sent` is what this
    /// worker sent this round (as its peers received it).
    mutating func combine(
        _ x: inout [Float], row: MixingRow, received: [Int: ReceivedGossip], sent: ReceivedGossip, round: Int)
    /// x ← the round's combination when every worker's message is averaged exactly (uniform
    /// complete graph, by all-reduce); only called when `combinesAverages`. The average comes as
    /// the all-reduce's chunks, read where they are (other processes' shared memory).
    mutating func combine(
        _ x: inout [Float], average: [AverageChunk], sent: UnsafeBufferPointer<Float>, round: Int)
    /// The model x stands for, for reports and evaluation (push-sum's de-biased x/w); x itself
    /// for most rules.
    func model(_ x: [Float]) -> [Float]
}

extension GossipRule {
    public static var sendsBeforeLocalUpdate: Bool { false }
    public static var combinesAverages: Bool { false }
    public static var survivesRemovals: Bool { false }
    public func exchangePeers(round: Int) -> (sendTo: [Int], receiveFrom: [Int])? { nil }
    public func model(_ x: [Float]) -> [Float] { x }
    public mutating func combine(
        _ x: inout [Float], average: [AverageChunk], sent: UnsafeBufferPointer<Float>, round: Int
    ) {
        preconditionFailure("\(Self.self) does not combine by an all-reduce's average")
    }
}

/// Values `range` of the all-reduce's average x̄; a round's chunks cover the model, in order.
public struct AverageChunk {
    public var range: Range<Int>
    public var values: UnsafeBufferPointer<Float>

    public init(range: Range<Int>, values: UnsafeBufferPointer<Float>) {
        precondition(range.count == values.count, "chunk \(range) of \(values.count) values")
        self.range = range
        self.values = values
    }

    /// Checks that `chunks` cover 0..<count in order (the rules rely on it).
    static func checkCover(_ chunks: [AverageChunk], count: Int) {
        var next = 0
        for chunk in chunks {
            precondition(chunk.range.lowerBound == next, "average chunks leave a gap or overlap at \(next)")
            next = chunk.range.upperBound
        }
        precondition(next == count, "average chunks cover \(next) of \(count) values")
    }
}

/// The worker's local training as a rule sees it: its trainer (the shared model's steps, data
/// order and optimizer state) and the personalization that trains alongside it.
public struct LocalSteps {
    public var trainer: LocalTrainer
    public var personalizer: PersonalTrainer

    public init(trainer: LocalTrainer, personalizer: PersonalTrainer) {
        self.trainer = trainer
        self.personalizer = personalizer
    }

    /// Round t's (0-based) local steps on x, the private part's with them; FedProx's proximal
    /// term when given. Returns the mean loss and the learning rate of the round's first step.
    public mutating func train(_ x: inout [Float], round: Int, proximal: (mu: Float, anchor: [Float])? = nil) -> (
        meanLoss: Double, learningRate: Double
    ) {
        personalizer.trainRound(&x, shared: &trainer, round: round + 1, proximal: proximal)
    }
}

extension LocalSteps: Checkpointable {
    public func save(to writer: inout StateWriter) {
        trainer.save(to: &writer)
        personalizer.save(to: &writer)
    }

    public mutating func restore(from reader: inout StateReader) throws(StateArchiveError) {
        try trainer.restore(from: &reader)
        try personalizer.restore(from: &reader)
    }
}

/// The hyperparameters of the gossip rules (each rule reads its own).
public struct GossipRuleSettings: Sendable, Equatable, Codable {
    /// CHOCO-SGD's compression operator Q.
    public var compressor: Compressor
    /// CHOCO-SGD's consensus step size γ.
    public var consensusStep: Double

    public init(compressor: Compressor = .topK(ratio: 0.1), consensusStep: Double = 0.5) {
        self.compressor = compressor
        self.consensusStep = consensusStep
    }
}

extension GossipAlgorithm {
    /// Each algorithm's rule, one line each.
    public var ruleType: any GossipRule.Type {
        switch self {
        case .adaptThenCombine: AdaptThenCombine.self
        case .combineThenAdapt: CombineThenAdapt.self
        case .choco: ChocoGossip.self
        case .gradientTracking: GradientTracking.self
        }
    }

    /// The rule a worker runs: the algorithm's, inside push-sum when the weights are column- but
    /// not row-stochastic (directed graphs).
    public func makeRule(context: GossipRuleContext, settings: GossipRuleSettings) -> any GossipRule {
        func pushSum<Rule: GossipRule>(_: Rule.Type) -> any GossipRule {
            PushSum<Rule>(context: context, settings: settings)
        }
        return context.topology.requiresPushSum
            ? pushSum(ruleType) : ruleType.init(context: context, settings: settings)
    }
}

/// What a rule needs to know of its run when it is built.
public struct GossipRuleContext: Sendable {
    public var rank: Int
    public var workers: Int
    public var parameterCount: Int
    public var seed: UInt64
    public var topology: TopologySchedule
    /// Coordinates that never leave the worker (personal layers, running statistics kept
    /// locally): sent as zeros and restored after mixing by the worker machine; push-sum keeps
    /// them as values, not numerators.
    public var privateRanges: [Range<Int>]

    public init(
        rank: Int, workers: Int, parameterCount: Int, seed: UInt64, topology: TopologySchedule,
        privateRanges: [Range<Int>] = []
    ) {
        self.rank = rank
        self.workers = workers
        self.parameterCount = parameterCount
        self.seed = seed
        self.topology = topology
        self.privateRanges = privateRanges
    }

    /// Every peer this worker ever exchanges with: the union of its neighbours over one period of
    /// the schedule, or every other worker when the schedule has no period (random graphs).
    public var peersOverTheSchedule: [Int] {
        guard let period = topology.period else { return (0..<workers).filter { $0 != rank } }
        var peers = Set<Int>()
        for t in 0..<period {
            let graph = topology.topology(atRound: t)
            peers.formUnion(graph.inNeighbors(of: rank))
            peers.formUnion(graph.outNeighbors(of: rank))
        }
        peers.remove(rank)
        return peers.sorted()
    }
}
