import Datasets
import LearningCore
import Optimizers

#if canImport(Glibc)
    import Glibc
#endif

/// Federated (or gossip) personalization: which algorithm, with its hyperparameters spelled out.
public struct PersonalizationSettings: Sendable, Equatable, Codable {
    public enum Algorithm: String, Sendable, Codable, CaseIterable {
        /// No personal part beyond explicit `--personal-layers`.
        case none
        /// Each client trains alone (no communication): the lower baseline.
        case localOnly = "local-only"
        /// The shared model, fine-tuned on the client's own data before each evaluation.
        case fineTune = "fine-tune"
        /// FedPer (Arivazhagan et al. 2019): the head stays on the client.
        case fedPer = "fedper"
        /// FedRep (Collins et al., ICML 2021): each round trains the personal head first (body
        /// frozen), then the shared body (head frozen).
        case fedRep = "fedrep"
        /// FedBN (Li et al., ICLR 2021): batch-norm layers (affine parameters and statistics) stay local.
        case fedBN = "fedbn"
        /// Ditto (Li et al., ICML 2021): a personal model v trained on min F(v) + (λ/2)‖v − w‖².
        case ditto
        /// APFL (Deng et al. 2020): the deployed model is αv + (1 − α)w with α learned.
        case apfl
        /// FedRAP's additive form (Li et al., ICLR 2024): model = global + local; the loss adds
        /// −λ·‖local − global‖² and μ·‖global‖₁, with a curriculum on λ and μ.
        case additive
    }

    public enum Curriculum: String, Sendable, Codable, CaseIterable {
        /// λ_t = tanh(t/T)·λ, μ_t = tanh(t/T)·μ at round t (FedRAP's default `vary_param`).
        case tanh
        case fixed
    }

    public var algorithm: Algorithm
    /// fine-tune: local steps on the client's own data before each evaluation.
    public var fineTuneSteps: Int
    /// fine-tune: the constant learning rate of those steps (nil: the schedule's base rate η).
    /// Fine-tuning is a procedure of its own after training, so it neither warms up again nor
    /// inherits a decayed (or, at the end of a cosine schedule, zero) rate.
    public var fineTuneLearningRate: Double?
    /// FedRep: head steps per round (body frozen), before the `localSteps` body steps.
    public var headSteps: Int
    /// Ditto: λ of the pull (λ/2)‖v − w‖² towards the shared model.
    public var dittoLambda: Double
    /// APFL: the initial mixture weight α and α's learning rate.
    public var apflAlpha: Double
    public var apflAlphaLearningRate: Double
    /// additive: λ (pushing the views apart), μ (sparsity of the global part), the curriculum and
    /// its time constant T in rounds.
    public var additiveLambda: Double
    public var additiveMu: Double
    public var curriculum: Curriculum
    public var curriculumRounds: Double
    /// additive: the parameter slices (names or name prefixes such as `layers.0`) that get a local
    /// part; empty means every trainable slice.
    public var additiveLayers: [String] = []

    /// The coordinates of the additive slices in `layout`.
    public func additiveRanges(in layout: ParameterLayout) -> [Range<Int>] {
        layout.slices.filter { slice in
            slice.role == .trainable
                && (additiveLayers.isEmpty
                    || additiveLayers.contains { slice.name == $0 || slice.name.hasPrefix($0 + ".") })
        }.map(\.range)
    }

    public init(
        algorithm: Algorithm = .none, fineTuneSteps: Int = 20, headSteps: Int = 10, dittoLambda: Double = 0.1,
        apflAlpha: Double = 0.5, apflAlphaLearningRate: Double = 0.01, additiveLambda: Double = 0.001,
        additiveMu: Double = 0.0001, curriculum: Curriculum = .tanh, curriculumRounds: Double = 10
    ) {
        self.algorithm = algorithm
        self.fineTuneSteps = fineTuneSteps
        self.headSteps = headSteps
        self.dittoLambda = dittoLambda
        self.apflAlpha = apflAlpha
        self.apflAlphaLearningRate = apflAlphaLearningRate
        self.additiveLambda = additiveLambda
        self.additiveMu = additiveMu
        self.curriculum = curriculum
        self.curriculumRounds = curriculumRounds
    }

    private enum CodingKeys: String, CodingKey {
        case algorithm, fineTuneSteps, fineTuneLearningRate, headSteps, dittoLambda, apflAlpha, apflAlphaLearningRate,
            additiveLambda,
            additiveMu, curriculum, curriculumRounds, additiveLayers
    }

    /// Fields missing from an older configuration take their defaults.
    public init(from decoder: any Decoder) throws {
        self.init()
        let c = try decoder.container(keyedBy: CodingKeys.self)
        algorithm = try c.decodeIfPresent(Algorithm.self, forKey: .algorithm) ?? algorithm
        fineTuneSteps = try c.decodeIfPresent(Int.self, forKey: .fineTuneSteps) ?? fineTuneSteps
        fineTuneLearningRate = try c.decodeIfPresent(Double.self, forKey: .fineTuneLearningRate)
        headSteps = try c.decodeIfPresent(Int.self, forKey: .headSteps) ?? headSteps
        dittoLambda = try c.decodeIfPresent(Double.self, forKey: .dittoLambda) ?? dittoLambda
        apflAlpha = try c.decodeIfPresent(Double.self, forKey: .apflAlpha) ?? apflAlpha
        apflAlphaLearningRate =
            try c.decodeIfPresent(Double.self, forKey: .apflAlphaLearningRate) ?? apflAlphaLearningRate
        additiveLambda = try c.decodeIfPresent(Double.self, forKey: .additiveLambda) ?? additiveLambda
        additiveMu = try c.decodeIfPresent(Double.self, forKey: .additiveMu) ?? additiveMu
        curriculum = try c.decodeIfPresent(Curriculum.self, forKey: .curriculum) ?? curriculum
        curriculumRounds = try c.decodeIfPresent(Double.self, forKey: .curriculumRounds) ?? curriculumRounds
        additiveLayers = try c.decodeIfPresent([String].self, forKey: .additiveLayers) ?? additiveLayers
    }

    /// The curriculum factor at round t (1-based): tanh(t/T), or 1 when fixed.
    public func curriculumFactor(round: Int) -> Double {
        curriculum == .fixed ? 1 : tanh(Double(round) / curriculumRounds)
    }
}

/// FedRAP's additive objective for classification, on a shared part g and a private part l of
/// the same layout: the model is g + l, and
///   L(g, l) = CE(g + l) − λ·‖l − g‖² + μ·‖g‖₁
/// over the `additive` coordinates (FedRAP's code writes the two terms as means, MSE and mean
/// absolute value: its λ and μ are these times the number of coordinates). The negative term
/// pushes the two views apart; the L1 term makes g sparse. Training applies the L1 term by its
/// proximal step (soft-thresholding by η·μ after each step), which gives exact zeros.
/// Coordinates outside `additive` have l = 0 and are plain shared parameters.
public struct AdditiveObjective: Sendable {
    public let additive: [Range<Int>]
    public var count: Int { additive.reduce(0) { $0 + $1.count } }

    public init(additive: [Range<Int>]) { self.additive = additive }

    /// Given ∇CE at g + l (`gradient`), the (sub)gradients with respect to g and l, and the two
    /// regularizers' values ‖l − g‖² and ‖g‖₁: ∂g = ∇CE + 2λ(l − g) + μ·sign(g), ∂l = ∇CE − 2λ(l − g).
    public func gradients(
        crossEntropyGradient gradient: [Float], global: [Float], local: [Float], lambda: Double, mu: Double
    ) -> (global: [Float], local: [Float], separation: Double, sparsity: Double) {
        var globalGradient = gradient
        var localGradient = [Float](repeating: 0, count: gradient.count)
        var separation = 0.0
        var sparsity = 0.0
        for range in additive {
            for i in range {
                let difference = Double(local[i]) - Double(global[i])
                separation += difference * difference
                sparsity += abs(Double(global[i]))
                let sign: Double = global[i] > 0 ? 1 : (global[i] < 0 ? -1 : 0)
                globalGradient[i] = Float(Double(gradient[i]) + 2 * lambda * difference + mu * sign)
                localGradient[i] = Float(Double(gradient[i]) - 2 * lambda * difference)
            }
        }
        return (globalGradient, localGradient, separation, sparsity)
    }

    /// The whole objective at (g, l), given CE(g + l).
    public func value(crossEntropy: Double, global: [Float], local: [Float], lambda: Double, mu: Double) -> Double {
        var separation = 0.0
        var sparsity = 0.0
        for range in additive {
            for i in range {
                let difference = Double(local[i]) - Double(global[i])
                separation += difference * difference
                sparsity += abs(Double(global[i]))
            }
        }
        return crossEntropy - lambda * separation + mu * sparsity
    }

    /// The L1 term's proximal step: g ← sign(g)·max(|g| − threshold, 0) on the additive coordinates.
    public func softThreshold(_ global: inout [Float], by threshold: Float) {
        guard threshold > 0 else { return }
        for range in additive {
            for i in range {
                let magnitude = abs(global[i]) - threshold
                global[i] = magnitude > 0 ? (global[i] > 0 ? magnitude : -magnitude) : 0
            }
        }
    }

    /// The fraction of additive coordinates of g that are exactly zero.
    public func zeroFraction(_ global: [Float]) -> Double {
        var zeros = 0
        for range in additive { for i in range where global[i] == 0 { zeros += 1 } }
        return Double(zeros) / Double(max(count, 1))
    }

    /// g + l.
    public func combined(global: [Float], local: [Float]) -> [Float] {
        var model = global
        model.addScaled(local, by: 1)
        return model
    }
}

/// What a client keeps to itself under a personalization algorithm, how a round trains it
/// together with the shared model, and which model the client deploys (and is evaluated with).
/// Pure compute: the shared model is the only thing the worker ever sends.
public struct PersonalTrainer {
    public let settings: PersonalizationSettings
    /// Ditto's and APFL's personal model v, or the additive model's local part l.
    public private(set) var personal: [Float]?
    /// APFL's mixture weight.
    public private(set) var alpha: Double
    /// The curriculum values the additive loss used in the last round, and the fraction of the
    /// shared part that is exactly zero after it.
    public private(set) var lastLambda: Double?
    public private(set) var lastMu: Double?
    public private(set) var lastZeroFraction: Double?
    /// Trains the private part (Ditto, APFL, additive); nil for the other algorithms, which then
    /// allocate no second workspace.
    private var personalTrainer: LocalTrainer!
    private let head: [Range<Int>]
    private let body: [Range<Int>]
    private let objective: AdditiveObjective
    private let fineTuneFactory: () -> LocalTrainer

    /// - Parameter head: the personal slices (FedPer/FedRep's head); the rest of the trainable
    ///   slices are the body.
    public init(
        settings: PersonalizationSettings, network: Network, shard: Dataset, batchSize: Int,
        optimizer: OptimizerSettings,
        seed: UInt64, rank: Int, batchNorm: BatchNormSettings, localSteps: Int, head: [Range<Int>],
        initial: [Float], rounds: Int = 1
    ) {
        self.settings = settings
        alpha = settings.apflAlpha
        self.head = head
        body = network.layout.slices.filter { $0.role == .trainable && !head.contains($0.range) }.map(\.range)
        objective = AdditiveObjective(additive: settings.additiveRanges(in: network.layout))
        // The personal model's batches come from a stream of their own, so the shared model's
        // batches are the same whichever algorithm runs.
        let personalSeed = seed ^ 0x5E50_A1
        if [.ditto, .apfl, .additive].contains(settings.algorithm) {
            personalTrainer = LocalTrainer(
                network: network, shard: shard, batchSize: batchSize, localSteps: localSteps, optimizer: optimizer,
                seed: personalSeed, rank: rank, batchNorm: batchNorm, rounds: rounds)
        }
        var fineTuning = optimizer
        fineTuning.schedule = .constant(settings.fineTuneLearningRate ?? optimizer.schedule.baseRate)
        fineTuneFactory = { [fineTuning] in
            LocalTrainer(
                network: network, shard: shard, batchSize: batchSize, localSteps: settings.fineTuneSteps,
                optimizer: fineTuning, seed: personalSeed ^ 0xF1E7, rank: rank, batchNorm: batchNorm)
        }
        switch settings.algorithm {
        case .ditto, .apfl: personal = initial
        case .additive: personal = [Float](repeating: 0, count: initial.count)
        default: personal = nil
        }
    }

    /// One round of local training: the shared `parameters` (with `shared`, the worker's trainer)
    /// and the private part, in round `round` (1-based). Every phase follows the round clock (see
    /// `ScheduleClock`): FedRep's head steps, Ditto's and APFL's personal steps use the rates of
    /// the round they run in. Returns the mean training loss of the shared objective and the
    /// learning rate of the round's first step.
    public mutating func trainRound(
        _ parameters: inout [Float], shared: inout LocalTrainer, round: Int, proximal: (mu: Float, anchor: [Float])?
    ) -> (meanLoss: Double, learningRate: Double) {
        let index = round - 1
        switch settings.algorithm {
        case .none, .localOnly, .fineTune, .fedPer, .fedBN:
            return shared.train(&parameters, round: index, proximal: proximal)
        case .fedRep:
            _ = shared.train(
                &parameters, round: index, proximal: proximal, steps: settings.headSteps, frozen: body, phase: 1)
            return shared.train(&parameters, round: index, proximal: proximal, frozen: head)
        case .ditto:
            let anchor = parameters
            let result = shared.train(&parameters, round: index, proximal: proximal)
            var v = personal!
            _ = personalTrainer.train(&v, round: index, proximal: (Float(settings.dittoLambda), anchor))
            personal = v
            return result
        case .apfl:
            let result = shared.train(&parameters, round: index, proximal: proximal)
            trainMixture(shared: parameters, round: index)
            return result
        case .additive:
            return trainAdditive(&parameters, shared: &shared, round: round, proximal: proximal)
        }
    }

    /// APFL's personal steps: with u = αv + (1 − α)w and g = ∇L(u),
    /// v ← v − η·α·g and α ← clamp(α − η_α·⟨g, v − w⟩, 0, 1) (Deng et al. 2020, Algorithm 1),
    /// after the shared model's own steps this round.
    private mutating func trainMixture(shared w: [Float], round: Int) {
        var v = personal!
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
            alpha = min(max(alpha - settings.apflAlphaLearningRate * inner, 0), 1)
        }
        personal = v
    }

    /// The additive model's steps: both parts move on L(g, l) at the curriculum's λ_t and μ_t;
    /// g with the shared trainer's optimizer (its state is the shared model's), l with its own.
    private mutating func trainAdditive(
        _ global: inout [Float], shared: inout LocalTrainer, round: Int, proximal: (mu: Float, anchor: [Float])?
    ) -> (meanLoss: Double, learningRate: Double) {
        let factor = settings.curriculumFactor(round: round)
        let (lambda, mu) = (settings.additiveLambda * factor, settings.additiveMu * factor)
        lastLambda = lambda
        lastMu = mu
        var local = personal!
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
        lastZeroFraction = objective.zeroFraction(global)
        personal = local
        return (lossSum / Double(shared.localSteps), learningRate)
    }

    /// The model this client deploys, given its shared parameters.
    public mutating func deployed(_ parameters: [Float]) -> [Float] {
        switch settings.algorithm {
        case .fineTune:
            var model = parameters
            var tuner = fineTuneFactory()
            _ = tuner.train(&model, round: nil)
            return model
        case .ditto:
            return personal!
        case .apfl:
            var u = personal!
            u.scale(by: Float(alpha))
            u.addScaled(parameters, by: Float(1 - alpha))
            return u
        case .additive:
            return objective.combined(global: parameters, local: personal!)
        case .none, .localOnly, .fedPer, .fedRep, .fedBN:
            return parameters
        }
    }
}
