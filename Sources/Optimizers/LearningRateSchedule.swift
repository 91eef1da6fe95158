/// A learning rate as a function of the optimizer step (0-based).
public enum LearningRateSchedule: Sendable, Equatable, Codable, CustomStringConvertible {
    case constant(Double)
    /// base · factor^⌊step / every⌋.
    case step(base: Double, every: Int, factor: Double)
    /// Cosine annealing from base to minimum over totalSteps (Loshchilov and Hutter, ICLR 2017).
    case cosine(base: Double, totalSteps: Int, minimum: Double)
    /// Linear warm-up from base/warmupSteps to the wrapped schedule's value over warmupSteps
    /// (Goyal et al., "Accurate, Large Minibatch SGD", 2017), then the wrapped schedule,
    /// whose step counter starts at the end of the warm-up.
    indirect case warmup(steps: Int, then: LearningRateSchedule)

    /// In words, for reports: e.g. `linear warm-up over 100 steps, then 0.1 × 0.5 every 1000 steps`.
    public var description: String {
        switch self {
        case .constant(let rate): "\(rate) constant"
        case .step(let base, let every, let factor): "\(base) × \(factor) every \(every) steps"
        case .cosine(let base, let totalSteps, let minimum):
            "cosine from \(base) to \(minimum) over \(totalSteps) steps"
        case .warmup(let steps, let then): "linear warm-up over \(steps) steps, then \(then)"
        }
    }

    /// The peak rate the schedule is built around (before warm-up and decay).
    public var baseRate: Double {
        switch self {
        case .constant(let rate): rate
        case .step(let base, _, _): base
        case .cosine(let base, _, _): base
        case .warmup(_, let then): then.baseRate
        }
    }

    /// The same shape with every rate multiplied by `rate` and every step count by `steps`
    /// (large-batch learning-rate scaling and regime adaptation).
    public func scaled(rate: Double, steps: Int) -> LearningRateSchedule {
        switch self {
        case .constant(let value): .constant(value * rate)
        case .step(let base, let every, let factor): .step(base: base * rate, every: every * steps, factor: factor)
        case .cosine(let base, let totalSteps, let minimum):
            .cosine(base: base * rate, totalSteps: totalSteps * steps, minimum: minimum * rate)
        case .warmup(let warmupSteps, let then):
            .warmup(steps: warmupSteps * steps, then: then.scaled(rate: rate, steps: steps))
        }
    }

    public func learningRate(atStep step: Int) -> Double {
        switch self {
        case .constant(let rate):
            return rate
        case .step(let base, let every, let factor):
            return base * pow(factor, Double(step / max(every, 1)))
        case .cosine(let base, let totalSteps, let minimum):
            let progress = min(Double(step) / Double(max(totalSteps, 1)), 1)
            return minimum + (base - minimum) * 0.5 * (1 + cos(Double.pi * progress))
        case .warmup(let steps, let then):
            if step < steps { return then.learningRate(atStep: 0) * Double(step + 1) / Double(steps) }
            return then.learningRate(atStep: step - steps)
        }
    }
}

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
