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
    /// What the schedule's positions (and lengths) count: optimizer steps or rounds.
    public var scheduleUnit: ScheduleUnit
    public var momentumKind: MomentumKind
    public var momentum: Double
    public var weightDecay: Double
    public var weightDecayMode: WeightDecayMode
    /// Clip each gradient to this global L2 norm before anything else (nil: no clipping).
    public var gradientClipNorm: Double?

    public init(
        schedule: LearningRateSchedule, momentumKind: MomentumKind = .none, momentum: Double = 0,
        weightDecay: Double = 0, weightDecayMode: WeightDecayMode = .coupled, gradientClipNorm: Double? = nil,
        scheduleUnit: ScheduleUnit = .steps
    ) {
        self.scheduleUnit = scheduleUnit
        self.gradientClipNorm = gradientClipNorm
        self.schedule = schedule
        self.momentumKind = momentumKind
        self.momentum = momentum
        self.weightDecay = weightDecay
        self.weightDecayMode = weightDecayMode
    }

    private enum CodingKeys: String, CodingKey {
        case schedule, scheduleUnit, momentumKind, momentum, weightDecay, weightDecayMode, gradientClipNorm
    }

    /// A configuration written before `scheduleUnit` existed counted steps.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(
            schedule: try c.decode(LearningRateSchedule.self, forKey: .schedule),
            momentumKind: try c.decode(MomentumKind.self, forKey: .momentumKind),
            momentum: try c.decode(Double.self, forKey: .momentum),
            weightDecay: try c.decode(Double.self, forKey: .weightDecay),
            weightDecayMode: try c.decode(WeightDecayMode.self, forKey: .weightDecayMode),
            gradientClipNorm: try c.decodeIfPresent(Double.self, forKey: .gradientClipNorm),
            scheduleUnit: try c.decodeIfPresent(ScheduleUnit.self, forKey: .scheduleUnit) ?? .steps)
    }
}

/// A type-erased optimizer: a composed `GradientTransformation` with its state, and a step counter.
/// Applying it turns a gradient into new parameters: x ← x + chain(g). The schedule's position is
/// the step counter unless the caller gives it (`apply(gradient:to:scheduleStep:)`, which workers
/// use to follow the round clock, see `ScheduleClock`).
public struct Optimizer: @unchecked Sendable {
    private var state: Any
    private let apply: (inout [Float], inout Any, [Float], Int) -> Void
    private let saveState: (Any, inout StateWriter) -> Void
    private let restoreState: (inout StateReader) throws(StateArchiveError) -> Any
    private let initialState: () -> Any
    public private(set) var step: Int = 0
    public let settings: OptimizerSettings
    /// Set when the chain's last link, the scaling by −η, is left to `apply`, which fuses it with
    /// the step's addition (one pass over the update and the parameters instead of two).
    private var fusedScale: LearningRateSchedule?

    public init<T: GradientTransformation>(_ transformation: T, parameterCount: Int, settings: OptimizerSettings) {
        state = transformation.initialState(parameterCount: parameterCount)
        apply = { updates, erased, parameters, step in
            var typed = erased as! T.State
            erased = ()  // drop the boxed copy so the buffers stay uniquely referenced
            transformation.update(&updates, state: &typed, parameters: parameters, step: step)
            erased = typed
        }
        saveState = { erased, writer in transformation.save(erased as! T.State, to: &writer) }
        restoreState = { reader throws(StateArchiveError) in
            try transformation.restore(from: &reader, parameterCount: parameterCount)
        }
        initialState = { transformation.initialState(parameterCount: parameterCount) }
        self.settings = settings
    }

    /// Forgets the transformations' state (the momentum trace back to zero), as a freshly built
    /// optimizer; the step counter, so the schedule's position, is kept.
    public mutating func resetState() {
        state = ()
        state = initialState()
    }

    /// Builds SGD from settings: chain(clip?, coupled decay?, trace?, scale by −η, decoupled decay?).
    /// When nothing follows the scaling (no decoupled decay), `apply` scales and adds in one pass,
    /// with the same bits; `fusingTheScaling: false` keeps the scaling in the chain (the reference
    /// the fused step is tested against).
    public init(settings: OptimizerSettings, parameterCount: Int, fusingTheScaling: Bool = true) {
        let coupled = Chain(
            ClipByGlobalNorm(maxNorm: Float(settings.gradientClipNorm ?? 0)),
            AddDecayedWeights(weightDecay: settings.weightDecayMode == .coupled ? Float(settings.weightDecay) : 0))
        switch settings.momentumKind {
        case .none:
            self = Self.sgd(coupled, settings, parameterCount, fusingTheScaling)
        case .heavyBall, .nesterov:
            let trace = Trace(momentum: Float(settings.momentum), nesterov: settings.momentumKind == .nesterov)
            self = Self.sgd(Chain(coupled, trace), settings, parameterCount, fusingTheScaling)
        }
    }

    /// `head`, then the scaling by −η and decoupled decay: in the chain, or the scaling fused
    /// into `apply` when it may be and no decay follows it.
    private static func sgd<Head: GradientTransformation>(
        _ head: Head, _ settings: OptimizerSettings, _ parameterCount: Int, _ fusing: Bool
    ) -> Optimizer {
        let decoupled = DecoupledWeightDecay(
            weightDecay: settings.weightDecayMode == .decoupled ? Float(settings.weightDecay) : 0,
            schedule: settings.schedule)
        guard fusing && decoupled.weightDecay == 0 else {
            let scale = ScaleByLearningRate(schedule: settings.schedule)
            return Optimizer(Chain(Chain(head, scale), decoupled), parameterCount: parameterCount, settings: settings)
        }
        var optimizer = Optimizer(head, parameterCount: parameterCount, settings: settings)
        optimizer.fusedScale = settings.schedule
        return optimizer
    }

    /// The learning rate the next `apply(gradient:to:)` will use.
    public var currentLearningRate: Double { settings.schedule.learningRate(atStep: step) }

    /// parameters ← parameters + chain(gradient), at the schedule position `scheduleStep` (the
    /// step counter when nil). `gradient` is consumed as scratch space.
    public mutating func apply(gradient: inout [Float], to parameters: inout [Float], scheduleStep: Int? = nil) {
        let position = scheduleStep ?? step
        apply(&gradient, &state, parameters, position)
        step += 1
        guard let fusedScale else { return parameters.addScaled(gradient, by: 1) }
        // x ← x + (−η·u): ScaleByLearningRate's scaling and the addition, in one pass.
        let scale = Float(-fusedScale.learningRate(atStep: position))
        guard scale != 0 else {
            gradient.scale(by: scale)
            return parameters.addScaled(gradient, by: 1)
        }
        precondition(gradient.count == parameters.count, "\(gradient.count) gradient values for \(parameters.count)")
        gradient.withUnsafeBufferPointer { u in
            parameters.withUnsafeMutableBufferPointer {
                VectorKernels.addRoundedProducts(scale, u.baseAddress!, to: $0.baseAddress!, u.count)
            }
        }
    }
}

extension OptimizerSettings {
    /// The largest Hessian eigenvalue λ along which this optimizer's iteration is stable on a
    /// quadratic at learning rate η (the edge-of-stability threshold, Cohen et al., ICLR 2021):
    /// SGD 2/η; heavy-ball momentum β (PyTorch's form, m ← βm + g, x ← x − ηm) 2(1 + β)/η;
    /// Nesterov (u = g + βm) 2(1 + β)/((1 + 2β)η). Weight decay wd shifts it: coupled (L2 in the
    /// gradient) by −wd; decoupled (x ← x − η·u − η·wd·x) by −wd(1 + β) with heavy ball and
    /// −wd(1 + β)/(1 + 2β) with Nesterov (−wd without momentum). Derived from the eigenvalue −1 of
    /// the 2×2 iteration matrix of (x, m); checked against the optimizer itself in the tests.
    /// Returns the value and the formula in words; infinite when η = 0.
    public func stabilityThreshold(learningRate eta: Double) -> (value: Double, formula: String) {
        let beta = momentumKind == .none ? 0 : momentum
        let (base, baseFormula): (Double, String)
        switch momentumKind {
        case .none: (base, baseFormula) = (2 / eta, "2/η")
        case .heavyBall: (base, baseFormula) = (2 * (1 + beta) / eta, "2(1+β)/η, β = \(beta)")
        case .nesterov:
            (base, baseFormula) = (2 * (1 + beta) / ((1 + 2 * beta) * eta), "2(1+β)/((1+2β)η), β = \(beta) (Nesterov)")
        }
        guard weightDecay != 0 else { return (base, baseFormula) }
        let shift: Double
        switch (weightDecayMode, momentumKind) {
        case (.coupled, _), (.decoupled, .none): shift = weightDecay
        case (.decoupled, .heavyBall): shift = weightDecay * (1 + beta)
        case (.decoupled, .nesterov): shift = weightDecay * (1 + beta) / (1 + 2 * beta)
        }
        return (base - shift, baseFormula + " − \(shift) (\(weightDecayMode.rawValue) weight decay \(weightDecay))")
    }
}

extension Optimizer: Checkpointable {
    /// The step counter and the transformations' state (the momentum trace).
    public func save(to writer: inout StateWriter) {
        writer.section("optimizer")
        writer.write(step)
        saveState(state, &writer)
    }

    public mutating func restore(from reader: inout StateReader) throws(StateArchiveError) {
        try reader.expectSection("optimizer")
        step = try reader.readInt()
        state = try restoreState(&reader)
    }
}
