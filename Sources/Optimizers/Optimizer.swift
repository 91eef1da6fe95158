import LearningCore

/// How weight decay enters the update.
public enum WeightDecayMode: String, Sendable, Codable, CaseIterable {
    /// Added to the gradient before momentum (classic L2).
    case coupled
    /// Applied to the parameters after the learning-rate scaling (AdamW/SGDW style).
    case decoupled
}

/// Momentum variant.
public enum MomentumKind: String, Sendable, Codable, CaseIterable {
    case none
    case heavyBall = "heavy-ball"
    case nesterov
}

/// The optimizer hyperparameters of a run.
public struct OptimizerSettings: Sendable, Equatable, Codable {
    public var schedule: LearningRateSchedule
    public var momentumKind: MomentumKind
    public var momentum: Double
    public var weightDecay: Double
    public var weightDecayMode: WeightDecayMode
    /// Clip each gradient to this global L2 norm before anything else (nil: no clipping).
    public var gradientClipNorm: Double?

    public init(
        schedule: LearningRateSchedule, momentumKind: MomentumKind = .none, momentum: Double = 0,
        weightDecay: Double = 0, weightDecayMode: WeightDecayMode = .coupled, gradientClipNorm: Double? = nil
    ) {
        self.gradientClipNorm = gradientClipNorm
        self.schedule = schedule
        self.momentumKind = momentumKind
        self.momentum = momentum
        self.weightDecay = weightDecay
        self.weightDecayMode = weightDecayMode
    }
}

/// A type-erased optimizer: a composed `GradientTransformation` with its state, and a step counter.
/// Applying it turns a gradient into new parameters: x ← x + chain(g).
public struct Optimizer: @unchecked Sendable {
    private var state: Any
    private let apply: (inout [Float], inout Any, [Float], Int) -> Void
    public private(set) var step: Int = 0
    public let settings: OptimizerSettings

    public init<T: GradientTransformation>(_ transformation: T, parameterCount: Int, settings: OptimizerSettings) {
        state = transformation.initialState(parameterCount: parameterCount)
        apply = { updates, erased, parameters, step in
            var typed = erased as! T.State
            erased = ()  // drop the boxed copy so the buffers stay uniquely referenced
            transformation.update(&updates, state: &typed, parameters: parameters, step: step)
            erased = typed
        }
        self.settings = settings
    }

    /// Builds SGD from settings: chain(clip?, coupled decay?, trace?, scale by −η, decoupled decay?).
    public init(settings: OptimizerSettings, parameterCount: Int) {
        let coupled = Chain(
            ClipByGlobalNorm(maxNorm: Float(settings.gradientClipNorm ?? 0)),
            AddDecayedWeights(weightDecay: settings.weightDecayMode == .coupled ? Float(settings.weightDecay) : 0))
        let decoupled = DecoupledWeightDecay(
            weightDecay: settings.weightDecayMode == .decoupled ? Float(settings.weightDecay) : 0,
            schedule: settings.schedule)
        let scale = ScaleByLearningRate(schedule: settings.schedule)
        switch settings.momentumKind {
        case .none:
            self.init(Chain(Chain(coupled, scale), decoupled), parameterCount: parameterCount, settings: settings)
        case .heavyBall, .nesterov:
            let trace = Trace(momentum: Float(settings.momentum), nesterov: settings.momentumKind == .nesterov)
            self.init(
                Chain(Chain(Chain(coupled, trace), scale), decoupled), parameterCount: parameterCount,
                settings: settings)
        }
    }

    /// The learning rate the next `apply` will use.
    public var currentLearningRate: Double { settings.schedule.learningRate(atStep: step) }

    /// parameters ← parameters + chain(gradient). `gradient` is consumed as scratch space.
    public mutating func apply(gradient: inout [Float], to parameters: inout [Float]) {
        apply(&gradient, &state, parameters, step)
        parameters.addScaled(gradient, by: 1)
        step += 1
    }
}
