import LearningCore
import Topologies

/// What one gossip message of a rule carries when it is sent.
public enum GossipMessage {
    /// `vectorsPerMessage` model-sized vectors, concatenated (travels as the envelope's payload,
    /// through shared memory between processes on one host).
    case dense([Float])
    /// Encoded bytes (a compressed vector; travels as the envelope's body).
    case encoded([UInt8])
}

/// A received message as a rule reads it: dense values (possibly in place in the sender's
/// shared memory, valid only during the call) or the encoded bytes.
public enum ReceivedGossip {
    case dense(UnsafeBufferPointer<Float>)
    case encoded([UInt8])
}

/// Round t's mixing weights as worker i sees them: Wᵢᵢ and the in-neighbours' Wᵢⱼ.
public struct MixingRow: Sendable, Equatable {
    public var selfWeight: Float
    public var neighbors: [Neighbor]

    public struct Neighbor: Sendable, Equatable {
        public var rank: Int
        public var weight: Float
        public init(rank: Int, weight: Float) {
            self.rank = rank
            self.weight = weight
        }
    }

    public init(selfWeight: Float, neighbors: [Neighbor]) {
        self.selfWeight = selfWeight
        self.neighbors = neighbors
    }
}

/// A decentralized algorithm's round as a value, in the spirit of optax's (init, update) pairs:
/// the worker machine keeps rounds, flow control, buffering and messaging, and asks the rule
/// what to compute, what to send and how to combine what came back. A round t of worker i:
/// 1. `localUpdate` (the rule's computation on xᵢ with the worker's trainer);
/// 2. `message` to every peer of `exchangePeers` (the round's out-neighbours by default);
/// 3. once a message from every receiving peer is in, `combine` with round t's row of W.
///
/// Every worker's rule is built from the same configuration, so what a sender derives from its
/// own message (CHOCO-SGD's public copy) is what its receivers derive from it, bit for bit.
public protocol GossipRule {
    /// A worker's rule at the start of a run (every worker's built from the same settings).
    init(context: GossipRuleContext, settings: GossipRuleSettings)
    /// Model-sized vectors in one dense message (1; 2 for gradient tracking's x and y).
    static var vectorsPerMessage: Int { get }
    /// Peers this worker sends to and hears from in round t when they are not the round's out-
    /// and in-neighbours (CHOCO-SGD on a changing graph: every peer whose public copy it keeps).
    func exchangePeers(round: Int) -> (sendTo: [Int], receiveFrom: [Int])?
    /// Why a received message cannot be used (wrong length, malformed encoding), or nil.
    func problem(with message: ReceivedGossip) -> String?
    /// The rule's local computation of round t (0-based) on x; returns the mean mini-batch loss
    /// and the learning rate it used.
    mutating func localUpdate(_ x: inout [Float], trainer: inout LocalTrainer, round: Int) -> (
        meanLoss: Double, learningRate: Double
    )
    /// Round t's message, after `localUpdate`.
    mutating func message(_ x: [Float], round: Int) -> GossipMessage
    /// x ← the round's combination, from every receiving peer's message.
    mutating func combine(_ x: inout [Float], row: MixingRow, received: [Int: ReceivedGossip], round: Int)
}

extension GossipRule {
    public func exchangePeers(round: Int) -> (sendTo: [Int], receiveFrom: [Int])? { nil }
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
    /// The algorithms that run as a `GossipRule` value, one line each; nil: ATC and CTA, which
    /// the worker machine still runs itself (with push-sum and the all-reduce).
    public var ruleType: (any GossipRule.Type)? {
        switch self {
        case .adaptThenCombine, .combineThenAdapt: nil
        case .choco: ChocoGossip.self
        case .gradientTracking: GradientTracking.self
        }
    }
}

/// What a rule needs to know of its run when it is built.
public struct GossipRuleContext: Sendable {
    public var rank: Int
    public var workers: Int
    public var parameterCount: Int
    public var seed: UInt64
    public var topology: TopologySchedule

    public init(rank: Int, workers: Int, parameterCount: Int, seed: UInt64, topology: TopologySchedule) {
        self.rank = rank
        self.workers = workers
        self.parameterCount = parameterCount
        self.seed = seed
        self.topology = topology
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
