import LearningCore

/// A pure optimizer building block in the style of optax: an explicit state and an update that
/// turns a gradient into the next transformation's input. Chains compose them; the last link
/// produces the step that is added to the parameters.
public protocol GradientTransformation: Sendable {
    associatedtype State: Sendable
    func initialState(parameterCount: Int) -> State
    /// Transforms `updates` in place. `step` is the 0-based optimizer step.
    func update(_ updates: inout [Float], state: inout State, parameters: [Float], step: Int)
    /// Writes the state for a checkpoint, and reads it back for a run of `parameterCount`.
    func save(_ state: State, to writer: inout StateWriter)
    func restore(from reader: inout StateReader, parameterCount: Int) throws(StateArchiveError) -> State
}

extension GradientTransformation where State == Void {
    /// Stateless: nothing to write.
    public func save(_ state: State, to writer: inout StateWriter) {}
    public func restore(from reader: inout StateReader, parameterCount: Int) throws(StateArchiveError) {}
}

/// Applies `first`, then `second`.
public struct Chain<First: GradientTransformation, Second: GradientTransformation>: GradientTransformation {
    public let first: First
    public let second: Second
    public init(_ first: First, _ second: Second) {
        self.first = first
        self.second = second
    }
    public func initialState(parameterCount: Int) -> (First.State, Second.State) {
        (first.initialState(parameterCount: parameterCount), second.initialState(parameterCount: parameterCount))
    }
    public func update(
        _ updates: inout [Float], state: inout (First.State, Second.State), parameters: [Float], step: Int
    ) {
        first.update(&updates, state: &state.0, parameters: parameters, step: step)
        second.update(&updates, state: &state.1, parameters: parameters, step: step)
    }
    public func save(_ state: (First.State, Second.State), to writer: inout StateWriter) {
        first.save(state.0, to: &writer)
        second.save(state.1, to: &writer)
    }
    public func restore(from reader: inout StateReader, parameterCount: Int) throws(StateArchiveError) -> (
        First.State, Second.State
    ) {
        let head = try first.restore(from: &reader, parameterCount: parameterCount)
        return (head, try second.restore(from: &reader, parameterCount: parameterCount))
    }
}

/// Clipping by global norm: g ← g·min(1, maxNorm/‖g‖₂), the norm over the whole model
/// (Pascanu et al., ICML 2013; PyTorch's `clip_grad_norm_`, optax's `clip_by_global_norm`).
public struct ClipByGlobalNorm: GradientTransformation {
    public let maxNorm: Float
    public init(maxNorm: Float) { self.maxNorm = maxNorm }
    public func initialState(parameterCount: Int) {}
    public func update(_ updates: inout [Float], state: inout Void, parameters: [Float], step: Int) {
        guard maxNorm > 0 else { return }
        let norm = updates.squaredNorm.squareRoot()
        if norm > Double(maxNorm) { updates.scale(by: Float(Double(maxNorm) / norm)) }
    }
}

/// Coupled L2 regularisation: g ← g + weightDecay·x (the gradient of (weightDecay/2)‖x‖²).
public struct AddDecayedWeights: GradientTransformation {
    public let weightDecay: Float
    public init(weightDecay: Float) { self.weightDecay = weightDecay }
    public func initialState(parameterCount: Int) {}
    public func update(_ updates: inout [Float], state: inout Void, parameters: [Float], step: Int) {
        guard weightDecay != 0 else { return }
        updates.addScaled(parameters, by: weightDecay)
    }
}

/// Momentum as a trace m ← momentum·m + g; emits m (heavy ball, Polyak 1964) or g + momentum·m
/// (Nesterov, in the form of Sutskever et al., ICML 2013, as PyTorch and optax use).
public struct Trace: GradientTransformation {
    public let momentum: Float
    public let nesterov: Bool
    public init(momentum: Float, nesterov: Bool) {
        self.momentum = momentum
        self.nesterov = nesterov
    }
    public func initialState(parameterCount: Int) -> [Float] { [Float](repeating: 0, count: parameterCount) }
    public func save(_ trace: [Float], to writer: inout StateWriter) {
        writer.section("momentum")
        writer.write(trace)
    }
    public func restore(from reader: inout StateReader, parameterCount: Int) throws(StateArchiveError) -> [Float] {
        try reader.expectSection("momentum")
        return try reader.readFloats(count: parameterCount, "the momentum buffer")
    }
    public func update(_ updates: inout [Float], state trace: inout [Float], parameters: [Float], step: Int) {
        trace.scale(by: momentum)
        trace.addScaled(updates, by: 1)
        if nesterov {
            updates.addScaled(trace, by: momentum)
        } else {
            updates.withUnsafeMutableBufferPointer { u in
                trace.withUnsafeBufferPointer { BLAS.copy(count: u.count, x: $0.baseAddress!, y: u.baseAddress!) }
            }
        }
    }
}

/// u ← −η(step)·u: turns a descent direction into a parameter step.
public struct ScaleByLearningRate: GradientTransformation {
    public let schedule: LearningRateSchedule
    public init(schedule: LearningRateSchedule) { self.schedule = schedule }
    public func initialState(parameterCount: Int) {}
    public func update(_ updates: inout [Float], state: inout Void, parameters: [Float], step: Int) {
        updates.scale(by: Float(-schedule.learningRate(atStep: step)))
    }
}

/// Decoupled weight decay (Loshchilov and Hutter, ICLR 2019), applied after the learning-rate
/// scaling: u ← u − η(step)·weightDecay·x, so the decay does not pass through momentum.
public struct DecoupledWeightDecay: GradientTransformation {
    public let weightDecay: Float
    public let schedule: LearningRateSchedule
    public init(weightDecay: Float, schedule: LearningRateSchedule) {
        self.weightDecay = weightDecay
        self.schedule = schedule
    }
    public func initialState(parameterCount: Int) {}
    public func update(_ updates: inout [Float], state: inout Void, parameters: [Float], step: Int) {
        guard weightDecay != 0 else { return }
        updates.addScaled(parameters, by: Float(-schedule.learningRate(atStep: step)) * weightDecay)
    }
}
