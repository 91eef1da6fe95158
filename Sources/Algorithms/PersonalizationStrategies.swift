import Datasets
import LearningCore
import Optimizers

/// A personalization algorithm as a value: what stays on the client (`privateLayers`, the
/// private part), how a round trains it together with the shared model (`trainRound`), and
/// which model the client deploys and is evaluated with (`deployed`). Pure compute: the shared
/// model is the only thing a worker ever sends. Each algorithm is one type below, registered in
/// `PersonalizationSettings.Algorithm.strategyType`.
///
/// A strategy is `Checkpointable`: its private state (Ditto's and APFL's v with their optimizers,
/// APFL's α, the additive local part) is what a checkpoint needs of it between rounds.
public protocol PersonalizationStrategy: Checkpointable {
    init(settings: PersonalizationSettings, context: PersonalizationContext)
    /// Layers that stay on the client because of the algorithm itself (FedPer's and FedRep's
    /// head, FedBN's batch-norm layers), as slice names of `network`'s layout; empty for most.
    static func privateLayers(of network: Network) -> [String]
    /// Whether every batch-norm layer's running statistics stay on the client (FedBN).
    static var keepsBatchNormStatisticsLocal: Bool { get }
    /// Why the algorithm cannot run in a run with these facts, or nil.
    static func refusal(_ run: PersonalizationRunFacts) -> String?
    /// The algorithm in words for reports (nil: nothing to say).
    static func describe(_ settings: PersonalizationSettings) -> String?
    /// One round of local training (round 1-based): the shared `parameters` with `shared`, the
    /// worker's trainer, and the private part; FedProx's proximal term on the shared model when
    /// given. Returns the mean training loss of the shared objective and the learning rate of the
    /// round's first step. Every phase follows the round clock (see `ScheduleClock`).
    mutating func trainRound(
        _ parameters: inout [Float], shared: inout LocalTrainer, round: Int, proximal: (mu: Float, anchor: [Float])?
    ) -> (meanLoss: Double, learningRate: Double)
    /// The model this client deploys, given its shared parameters.
    mutating func deployed(_ parameters: [Float]) -> [Float]
    /// The private part (Ditto's and APFL's v, the additive model's l), for tests and dumps.
    var personal: [Float]? { get }
    /// What the last round reports of the private side (APFL's α, the additive curriculum).
    var report: PersonalizationReport { get }
}

extension PersonalizationStrategy {
    public static func privateLayers(of network: Network) -> [String] { [] }
    public static var keepsBatchNormStatisticsLocal: Bool { false }
    public static func refusal(_ run: PersonalizationRunFacts) -> String? { nil }
    public static func describe(_ settings: PersonalizationSettings) -> String? { nil }
    public mutating func trainRound(
        _ parameters: inout [Float], shared: inout LocalTrainer, round: Int, proximal: (mu: Float, anchor: [Float])?
    ) -> (meanLoss: Double, learningRate: Double) {
        shared.train(&parameters, round: round - 1, proximal: proximal)
    }
    public mutating func deployed(_ parameters: [Float]) -> [Float] { parameters }
    public var personal: [Float]? { nil }
    public var report: PersonalizationReport { PersonalizationReport() }
}

/// A strategy with no state of its own between rounds (what it trains lives in the shared
/// trainer, whose state the checkpoint holds): its name alone is written, so a checkpoint of
/// another strategy is refused.
public protocol StatelessPersonalization: PersonalizationStrategy {}

extension StatelessPersonalization {
    public func save(to writer: inout StateWriter) { writer.section("\(Self.self)") }
    public mutating func restore(from reader: inout StateReader) throws(StateArchiveError) {
        try reader.expectSection("\(Self.self)")
    }
}

/// What a client's strategy is built from.
public struct PersonalizationContext {
    public var network: Network
    public var shard: Dataset
    public var batchSize: Int
    public var optimizer: OptimizerSettings
    public var seed: UInt64
    public var rank: Int
    public var batchNorm: BatchNormSettings
    public var localSteps: Int
    /// The personal slices (FedPer's and FedRep's head).
    public var head: [Range<Int>]
    /// x₀, where personal models start.
    public var initial: [Float]
    public var rounds: Int

    public init(
        network: Network, shard: Dataset, batchSize: Int, optimizer: OptimizerSettings, seed: UInt64, rank: Int,
        batchNorm: BatchNormSettings, localSteps: Int, head: [Range<Int>], initial: [Float], rounds: Int
    ) {
        self.network = network
        self.shard = shard
        self.batchSize = batchSize
        self.optimizer = optimizer
        self.seed = seed
        self.rank = rank
        self.batchNorm = batchNorm
        self.localSteps = localSteps
        self.head = head
        self.initial = initial
        self.rounds = rounds
    }

    /// The private model's trainer: its batches come from a stream of their own, so the shared
    /// model's batches are the same whichever algorithm runs.
    func personalTrainer() -> LocalTrainer {
        LocalTrainer(
            network: network, shard: shard, batchSize: batchSize, localSteps: localSteps, optimizer: optimizer,
            seed: seed ^ Self.personalStream, rank: rank, batchNorm: batchNorm, rounds: rounds)
    }

    static let personalStream: UInt64 = 0x5E50_A1
}

/// What the configuration says about a run that a strategy may refuse.
public struct PersonalizationRunFacts: Sendable {
    public var modelHasBatchNorm: Bool
    /// Models are exchanged (with a server, or any gossip edge in the first round's graph).
    public var communicates: Bool
    /// Slices are kept on the client (`--personal-layers`, or the strategy's own).
    public var hasPrivateLayers: Bool

    public init(modelHasBatchNorm: Bool, communicates: Bool, hasPrivateLayers: Bool) {
        self.modelHasBatchNorm = modelHasBatchNorm
        self.communicates = communicates
        self.hasPrivateLayers = hasPrivateLayers
    }
}

/// What a round reports of the private side.
public struct PersonalizationReport: Sendable, Equatable {
    /// APFL's learned mixture weight α.
    public var alpha: Double?
    /// The additive loss's curriculum values this round, and the fraction of the shared part
    /// that is exactly zero after it.
    public var lambda: Double?
    public var mu: Double?
    public var zeroFraction: Double?

    public init(alpha: Double? = nil, lambda: Double? = nil, mu: Double? = nil, zeroFraction: Double? = nil) {
        self.alpha = alpha
        self.lambda = lambda
        self.mu = mu
        self.zeroFraction = zeroFraction
    }
}

extension PersonalizationSettings.Algorithm {
    /// Each algorithm's strategy, one line each.
    public var strategyType: any PersonalizationStrategy.Type {
        switch self {
        case .none: NoPersonalization.self
        case .localOnly: LocalOnly.self
        case .fineTune: FineTuning.self
        case .fedPer: FedPer.self
        case .fedRep: FedRep.self
        case .fedBN: FedBN.self
        case .ditto: Ditto.self
        case .apfl: APFL.self
        case .additive: AdditiveModel.self
        }
    }
}

extension PersonalizationSettings {
    /// A client's strategy for these settings.
    public func makeStrategy(_ context: PersonalizationContext) -> any PersonalizationStrategy {
        algorithm.strategyType.init(settings: self, context: context)
    }
}

/// Everything shared (beyond explicit `--personal-layers`).
public struct NoPersonalization: StatelessPersonalization {
    public init(settings: PersonalizationSettings, context: PersonalizationContext) {}
}

/// Each client trains alone (no communication): the lower baseline.
public struct LocalOnly: StatelessPersonalization {
    public init(settings: PersonalizationSettings, context: PersonalizationContext) {}

    public static func refusal(_ run: PersonalizationRunFacts) -> String? {
        run.communicates ? "local-only means no communication: use --topology solo without --federated" : nil
    }

    public static func describe(_ settings: PersonalizationSettings) -> String? {
        "local-only: nothing is communicated"
    }
}

/// The last layer of a network (weights and bias), the head FedPer and FedRep keep.
private func headLayer(of network: Network) -> [String] {
    ["layers.\(network.layers.count - 1)"]
}

/// FedPer (Arivazhagan et al. 2019): the head stays on the client; the body is shared.
public struct FedPer: StatelessPersonalization {
    public init(settings: PersonalizationSettings, context: PersonalizationContext) {}
    public static func privateLayers(of network: Network) -> [String] { headLayer(of: network) }
    public static func refusal(_ run: PersonalizationRunFacts) -> String? {
        run.hasPrivateLayers ? nil : "fedper needs a personal head (--personal-head)"
    }
    public static func describe(_ settings: PersonalizationSettings) -> String? { "FedPer" }
}

/// FedBN (Li et al., ICLR 2021): batch-norm layers (affine parameters and statistics) stay local.
public struct FedBN: StatelessPersonalization {
    public init(settings: PersonalizationSettings, context: PersonalizationContext) {}
    public static func privateLayers(of network: Network) -> [String] {
        network.layers.indices.filter { network.layers[$0] is BatchNorm }.map { "layers.\($0)" }
    }
    public static var keepsBatchNormStatisticsLocal: Bool { true }
    public static func refusal(_ run: PersonalizationRunFacts) -> String? {
        run.modelHasBatchNorm ? nil : "fedbn needs a model with batch norm (:bn or cnn)"
    }
    public static func describe(_ settings: PersonalizationSettings) -> String? { "FedBN" }
}

/// The shared model, fine-tuned on the client's own data before each evaluation.
public struct FineTuning: StatelessPersonalization {
    private let makeTuner: () -> LocalTrainer

    public init(settings: PersonalizationSettings, context: PersonalizationContext) {
        // Fine-tuning is a procedure of its own after training: a constant rate, from a stream of
        // its own.
        var fineTuning = context.optimizer
        fineTuning.schedule = .constant(settings.fineTuneLearningRate ?? context.optimizer.schedule.baseRate)
        makeTuner = { [fineTuning] in
            LocalTrainer(
                network: context.network, shard: context.shard, batchSize: context.batchSize,
                localSteps: settings.fineTuneSteps, optimizer: fineTuning,
                seed: context.seed ^ PersonalizationContext.personalStream ^ 0xF1E7, rank: context.rank,
                batchNorm: context.batchNorm)
        }
    }

    public static func describe(_ settings: PersonalizationSettings) -> String? {
        "fine-tune: \(settings.fineTuneSteps) local steps before each evaluation"
    }

    public mutating func deployed(_ parameters: [Float]) -> [Float] {
        var model = parameters
        var tuner = makeTuner()
        _ = tuner.train(&model, round: nil)
        return model
    }
}

/// FedRep (Collins et al., ICML 2021): each round trains the personal head first (body frozen,
/// its own optimizer state), then the shared body (head frozen).
public struct FedRep: StatelessPersonalization {
    private let headSteps: Int
    private let head: [Range<Int>]
    private let body: [Range<Int>]

    public init(settings: PersonalizationSettings, context: PersonalizationContext) {
        headSteps = settings.headSteps
        head = context.head
        body = context.network.layout.slices.filter { $0.role == .trainable && !context.head.contains($0.range) }
            .map(\.range)
    }

    public static func privateLayers(of network: Network) -> [String] { headLayer(of: network) }
    public static func refusal(_ run: PersonalizationRunFacts) -> String? {
        run.hasPrivateLayers ? nil : "fedrep needs a personal head (--personal-head)"
    }
    public static func describe(_ settings: PersonalizationSettings) -> String? {
        "FedRep: \(settings.headSteps) head steps, then the body's local steps"
    }

    public mutating func trainRound(
        _ parameters: inout [Float], shared: inout LocalTrainer, round: Int, proximal: (mu: Float, anchor: [Float])?
    ) -> (meanLoss: Double, learningRate: Double) {
        _ = shared.train(&parameters, round: round - 1, proximal: proximal, steps: headSteps, frozen: body, phase: 1)
        return shared.train(&parameters, round: round - 1, proximal: proximal, frozen: head)
    }
}

/// Ditto (Li et al., ICML 2021): a personal model v trained on min F(v) + (λ/2)‖v − w‖², w the
/// shared model the round started from; v is deployed and never leaves the client.
public struct Ditto: PersonalizationStrategy {
    private let lambda: Double
    private var personalTrainer: LocalTrainer
    private var v: [Float]

    public init(settings: PersonalizationSettings, context: PersonalizationContext) {
        lambda = settings.dittoLambda
        personalTrainer = context.personalTrainer()
        v = context.initial
    }

    public static func describe(_ settings: PersonalizationSettings) -> String? {
        "Ditto (λ = \(settings.dittoLambda)): a personal model v never leaves the client"
    }

    public var personal: [Float]? { v }

    public mutating func trainRound(
        _ parameters: inout [Float], shared: inout LocalTrainer, round: Int, proximal: (mu: Float, anchor: [Float])?
    ) -> (meanLoss: Double, learningRate: Double) {
        let anchor = parameters
        let result = shared.train(&parameters, round: round - 1, proximal: proximal)
        _ = personalTrainer.train(&v, round: round - 1, proximal: (Float(lambda), anchor))
        return result
    }

    public mutating func deployed(_ parameters: [Float]) -> [Float] { v }

    /// v and its trainer (data order, optimizer).
    public func save(to writer: inout StateWriter) {
        writer.section("Ditto")
        writer.write(v)
        personalTrainer.save(to: &writer)
    }

    public mutating func restore(from reader: inout StateReader) throws(StateArchiveError) {
        try reader.expectSection("Ditto")
        v = try reader.readFloats(count: v.count, "Ditto's personal model v")
        try personalTrainer.restore(from: &reader)
    }
}

/// APFL (Deng et al. 2020): the deployed model is αv + (1 − α)w, with v and α learned on the
/// client after the shared model's own steps each round.
public struct APFL: PersonalizationStrategy {
    private let alphaLearningRate: Double
    private var personalTrainer: LocalTrainer
    private var v: [Float]
    /// The mixture weight α.
    public private(set) var alpha: Double

    public init(settings: PersonalizationSettings, context: PersonalizationContext) {
        alphaLearningRate = settings.apflAlphaLearningRate
        alpha = settings.apflAlpha
        personalTrainer = context.personalTrainer()
        v = context.initial
    }

    public static func refusal(_ run: PersonalizationRunFacts) -> String? {
        run.modelHasBatchNorm
            ? "apfl mixes or adds two models, whose batch-norm running statistics have no meaning; use a model without batch norm"
            : nil
    }

    public static func describe(_ settings: PersonalizationSettings) -> String? {
        "APFL (α₀ = \(settings.apflAlpha), α's learning rate \(settings.apflAlphaLearningRate)): v and α never leave the client"
    }

    public var personal: [Float]? { v }
    public var report: PersonalizationReport { PersonalizationReport(alpha: alpha) }

    public mutating func trainRound(
        _ parameters: inout [Float], shared: inout LocalTrainer, round: Int, proximal: (mu: Float, anchor: [Float])?
    ) -> (meanLoss: Double, learningRate: Double) {
        let result = shared.train(&parameters, round: round - 1, proximal: proximal)
        trainMixture(shared: parameters, round: round - 1)
        return result
    }

    /// APFL's personal steps: with u = αv + (1 − α)w and g = ∇L(u),
    /// v ← v − η·α·g and α ← clamp(α − η_α·⟨g, v − w⟩, 0, 1) (Deng et al. 2020, Algorithm 1),
    /// after the shared model's own steps this round.
    private mutating func trainMixture(shared w: [Float], round: Int) {
        let steps = personalTrainer.localSteps
        for step in 0..<steps {
            let learningRate = personalTrainer.learningRate(round: round, step: step, of: steps)
            var u = v
            u.scale(by: Float(alpha))
            u.addScaled(w, by: Float(1 - alpha))
            let (_, gradient) = personalTrainer.nextBatchGradient(at: u)
            var inner = 0.0
            for i in gradient.indices { inner += Double(gradient[i]) * (Double(v[i]) - Double(w[i])) }
            v.addScaled(gradient, by: Float(-learningRate * alpha))
            alpha = min(max(alpha - alphaLearningRate * inner, 0), 1)
        }
    }

    public mutating func deployed(_ parameters: [Float]) -> [Float] {
        var u = v
        u.scale(by: Float(alpha))
        u.addScaled(parameters, by: Float(1 - alpha))
        return u
    }
    /// v, α and v's trainer (data order, optimizer).
    public func save(to writer: inout StateWriter) {
        writer.section("APFL")
        writer.write(v)
        writer.write(alpha)
        personalTrainer.save(to: &writer)
    }

    public mutating func restore(from reader: inout StateReader) throws(StateArchiveError) {
        try reader.expectSection("APFL")
        v = try reader.readFloats(count: v.count, "APFL's personal model v")
        alpha = try reader.readDouble()
        try personalTrainer.restore(from: &reader)
    }
}

/// FedRAP's additive form (Li et al., ICLR 2024): the model is global + local, trained on
/// `AdditiveObjective` with a curriculum on λ and μ; the local part never leaves the client.
public struct AdditiveModel: PersonalizationStrategy {
    private let settings: PersonalizationSettings
    private let objective: AdditiveObjective
    private var personalTrainer: LocalTrainer
    private var local: [Float]
    public private(set) var report = PersonalizationReport()

    public init(settings: PersonalizationSettings, context: PersonalizationContext) {
        self.settings = settings
        objective = AdditiveObjective(additive: settings.additiveRanges(in: context.network.layout))
        personalTrainer = context.personalTrainer()
        local = [Float](repeating: 0, count: context.initial.count)
    }

    public static func refusal(_ run: PersonalizationRunFacts) -> String? {
        run.modelHasBatchNorm
            ? "additive mixes or adds two models, whose batch-norm running statistics have no meaning; use a model without batch norm"
            : nil
    }

    public static func describe(_ settings: PersonalizationSettings) -> String? {
        let additive = settings.additiveLayers.isEmpty ? "every layer" : settings.additiveLayers.joined(separator: ", ")
        return
            "additive (FedRAP): model = global + local on \(additive); λ = \(settings.additiveLambda), μ = \(settings.additiveMu), curriculum \(settings.curriculum.rawValue) (T = \(settings.curriculumRounds) rounds); the local part never leaves the client"
    }

    public var personal: [Float]? { local }

    /// Both parts move on L(g, l) at the curriculum's λ_t and μ_t; g with the shared trainer's
    /// optimizer (its state is the shared model's), l with its own; the L1 term by its proximal
    /// step (soft-thresholding) after each step.
    public mutating func trainRound(
        _ global: inout [Float], shared: inout LocalTrainer, round: Int, proximal: (mu: Float, anchor: [Float])?
    ) -> (meanLoss: Double, learningRate: Double) {
        let factor = settings.curriculumFactor(round: round)
        let (lambda, mu) = (settings.additiveLambda * factor, settings.additiveMu * factor)
        var local = self.local
        let (index, steps) = (round - 1, shared.localSteps)
        let learningRate = shared.learningRate(round: index, step: 0, of: steps)
        var lossSum = 0.0
        for step in 0..<steps {
            let (crossEntropy, gradient) = shared.nextBatchGradient(
                at: objective.combined(global: global, local: local))
            // The smooth part by gradient steps; the L1 term by its proximal step below.
            var (globalGradient, localGradient, separation, sparsity) = objective.gradients(
                crossEntropyGradient: gradient, global: global, local: local, lambda: lambda, mu: 0)
            lossSum += crossEntropy - lambda * separation + mu * sparsity
            if let proximal, proximal.mu != 0 {
                globalGradient.addScaled(global, by: proximal.mu)
                globalGradient.addScaled(proximal.anchor, by: -proximal.mu)
            }
            let stepSize = shared.learningRate(round: index, step: step, of: steps)
            shared.applyStep(gradient: &globalGradient, to: &global, round: index, step: step, of: steps)
            objective.softThreshold(&global, by: Float(stepSize * mu))
            personalTrainer.applyStep(gradient: &localGradient, to: &local, round: index, step: step, of: steps)
        }
        report = PersonalizationReport(lambda: lambda, mu: mu, zeroFraction: objective.zeroFraction(global))
        self.local = local
        return (lossSum / Double(shared.localSteps), learningRate)
    }

    public mutating func deployed(_ parameters: [Float]) -> [Float] {
        objective.combined(global: parameters, local: local)
    }
    /// The local part l and its trainer (its optimizer's state).
    public func save(to writer: inout StateWriter) {
        writer.section("additive")
        writer.write(local)
        personalTrainer.save(to: &writer)
    }

    public mutating func restore(from reader: inout StateReader) throws(StateArchiveError) {
        try reader.expectSection("additive")
        local = try reader.readFloats(count: local.count, "the additive model's local part")
        try personalTrainer.restore(from: &reader)
    }
}

/// A client's personalization as the worker holds it: the settings' strategy, built for this
/// client.
public struct PersonalTrainer {
    public let settings: PersonalizationSettings
    private var strategy: any PersonalizationStrategy

    /// - Parameter head: the personal slices (FedPer/FedRep's head); the rest of the trainable
    ///   slices are the body.
    public init(
        settings: PersonalizationSettings, network: Network, shard: Dataset, batchSize: Int,
        optimizer: OptimizerSettings, seed: UInt64, rank: Int, batchNorm: BatchNormSettings, localSteps: Int,
        head: [Range<Int>], initial: [Float], rounds: Int = 1
    ) {
        self.settings = settings
        strategy = settings.makeStrategy(
            PersonalizationContext(
                network: network, shard: shard, batchSize: batchSize, optimizer: optimizer, seed: seed, rank: rank,
                batchNorm: batchNorm, localSteps: localSteps, head: head, initial: initial, rounds: rounds))
    }

    /// See `PersonalizationStrategy.trainRound`.
    public mutating func trainRound(
        _ parameters: inout [Float], shared: inout LocalTrainer, round: Int, proximal: (mu: Float, anchor: [Float])?
    ) -> (meanLoss: Double, learningRate: Double) {
        strategy.trainRound(&parameters, shared: &shared, round: round, proximal: proximal)
    }

    /// The model this client deploys, given its shared parameters.
    public mutating func deployed(_ parameters: [Float]) -> [Float] { strategy.deployed(parameters) }

    /// Ditto's and APFL's personal model v, or the additive model's local part l.
    public var personal: [Float]? { strategy.personal }
    /// What the last round reports of the private side.
    public var report: PersonalizationReport { strategy.report }
}

extension PersonalTrainer: Checkpointable {
    public func save(to writer: inout StateWriter) { strategy.save(to: &writer) }
    public mutating func restore(from reader: inout StateReader) throws(StateArchiveError) {
        try strategy.restore(from: &reader)
    }
}
