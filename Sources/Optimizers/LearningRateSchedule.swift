/// A learning rate as a function of the optimizer step (0-based).
public enum LearningRateSchedule: Sendable, Equatable, Codable {
    case constant(Double)
    /// base · factor^⌊step / every⌋.
    case step(base: Double, every: Int, factor: Double)
    /// Cosine annealing from base to minimum over totalSteps (Loshchilov and Hutter, ICLR 2017).
    case cosine(base: Double, totalSteps: Int, minimum: Double)
    /// Linear warm-up from base/warmupSteps to the wrapped schedule's value over warmupSteps
    /// (Goyal et al., "Accurate, Large Minibatch SGD", 2017), then the wrapped schedule,
    /// whose step counter starts at the end of the warm-up.
    indirect case warmup(steps: Int, then: LearningRateSchedule)

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
