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
