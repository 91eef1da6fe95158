#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// What a schedule's positions count: a worker's optimizer steps, or gossip (communication) rounds.
public enum ScheduleUnit: String, Sendable, Codable, CaseIterable {
    /// Position = round·S + s for step s of a round of S local steps: the schedule advances with
    /// every optimizer step a worker takes (PyTorch's scheduler stepped per batch).
    case steps
    /// Position = the 0-based round: the rate is constant within a round, as PyTorch's scheduler
    /// stepped once per epoch, and papers that state schedules in epochs or rounds.
    case rounds
}

/// A learning rate as a function of a 0-based position in the schedule (an optimizer step or a
/// round, see `ScheduleUnit`).
public enum LearningRateSchedule: Sendable, Equatable, Codable {
    case constant(Double)
    /// base · factor^⌊position / every⌋.
    case step(base: Double, every: Int, factor: Double)
    /// base · factor^(number of milestones ≤ position): PyTorch's MultiStepLR.
    case multistep(base: Double, milestones: [Int], factor: Double)
    /// Cosine annealing from base to minimum over totalSteps positions (Loshchilov and Hutter,
    /// ICLR 2017), then the minimum. nil: to the end of the run, resolved by `resolved(runLength:)`
    /// once a worker knows how many positions its run has.
    case cosine(base: Double, totalSteps: Int?, minimum: Double)
    /// Linear warm-up from base/warmupSteps to the wrapped schedule's value over warmupSteps
    /// positions (Goyal et al., "Accurate, Large Minibatch SGD", 2017), then the wrapped schedule,
    /// whose positions start at the end of the warm-up.
    indirect case warmup(steps: Int, then: LearningRateSchedule)

    /// In words, for reports: e.g. `linear warm-up over 100 steps, then 0.1 × 0.5 every 1000 steps`.
    public func description(unit: ScheduleUnit) -> String {
        let name = unit.rawValue
        switch self {
        case .constant(let rate): return "\(rate) constant"
        case .step(let base, let every, let factor): return "\(base) × \(factor) every \(every) \(name)"
        case .multistep(let base, let milestones, let factor):
            return
                "\(base) × \(factor) at each of \(name) \(milestones.map(String.init).joined(separator: ", "))"
        case .cosine(let base, let totalSteps, let minimum):
            return "cosine from \(base) to \(minimum) over "
                + (totalSteps.map { "\($0) \(name)" } ?? "the run")
        case .warmup(let steps, let then):
            return "linear warm-up over \(steps) \(name), then \(then.description(unit: unit))"
        }
    }

    /// The peak rate the schedule is built around (before warm-up and decay).
    public var baseRate: Double {
        switch self {
        case .constant(let rate): rate
        case .step(let base, _, _): base
        case .multistep(let base, _, _): base
        case .cosine(let base, _, _): base
        case .warmup(_, let then): then.baseRate
        }
    }

    /// The same shape with every rate multiplied by `rate` and every length by `steps`
    /// (large-batch learning-rate scaling and regime adaptation).
    public func scaled(rate: Double, steps: Int) -> LearningRateSchedule {
        switch self {
        case .constant(let value): .constant(value * rate)
        case .step(let base, let every, let factor): .step(base: base * rate, every: every * steps, factor: factor)
        case .multistep(let base, let milestones, let factor):
            .multistep(base: base * rate, milestones: milestones.map { $0 * steps }, factor: factor)
        case .cosine(let base, let totalSteps, let minimum):
            .cosine(base: base * rate, totalSteps: totalSteps.map { $0 * steps }, minimum: minimum * rate)
        case .warmup(let warmupSteps, let then):
            .warmup(steps: warmupSteps * steps, then: then.scaled(rate: rate, steps: steps))
        }
    }

    /// The schedule with a cosine "to the end of the run" given its length: the run has
    /// `runLength` positions, of which a warm-up takes its own.
    public func resolved(runLength: Int) -> LearningRateSchedule {
        switch self {
        case .constant, .step, .multistep: self
        case .cosine(let base, let totalSteps, let minimum):
            .cosine(base: base, totalSteps: totalSteps ?? max(runLength, 1), minimum: minimum)
        case .warmup(let steps, let then):
            .warmup(steps: steps, then: then.resolved(runLength: runLength - steps))
        }
    }

    /// Why this schedule cannot run (nil when it can): every rate finite and ≥ 0 with a positive
    /// base, every length positive, factors positive and finite, milestones increasing.
    public var problem: String? {
        switch self {
        case .constant(let rate):
            return rate.isFinite && rate > 0 ? nil : "the rate must be positive and finite, got \(rate)"
        case .step(let base, let every, let factor):
            if !(base.isFinite && base > 0) { return "the base rate must be positive and finite, got \(base)" }
            if every < 1 { return "step: EVERY must be at least 1, got \(every)" }
            return factor.isFinite && factor > 0 ? nil : "step: FACTOR must be positive and finite, got \(factor)"
        case .multistep(let base, let milestones, let factor):
            if !(base.isFinite && base > 0) { return "the base rate must be positive and finite, got \(base)" }
            if milestones.isEmpty || milestones.contains(where: { $0 < 1 })
                || !zip(milestones, milestones.dropFirst()).allSatisfy({ $0 < $1 })
            {
                return "multistep: milestones must be positive and increasing, got \(milestones)"
            }
            return factor.isFinite && factor > 0 ? nil : "multistep: FACTOR must be positive and finite, got \(factor)"
        case .cosine(let base, let totalSteps, let minimum):
            if !(base.isFinite && base > 0) { return "the base rate must be positive and finite, got \(base)" }
            if let totalSteps, totalSteps < 1 { return "cosine: the length must be at least 1, got \(totalSteps)" }
            return minimum.isFinite && minimum >= 0 ? nil : "cosine: MINIMUM must be finite and ≥ 0, got \(minimum)"
        case .warmup(let steps, let then):
            return steps >= 0 ? then.problem : "warm-up length must be ≥ 0, got \(steps)"
        }
    }

    public func learningRate(atStep step: Int) -> Double {
        switch self {
        case .constant(let rate):
            return rate
        case .step(let base, let every, let factor):
            return base * pow(factor, Double(step / max(every, 1)))
        case .multistep(let base, let milestones, let factor):
            return base * pow(factor, Double(milestones.count(where: { $0 <= step })))
        case .cosine(let base, let totalSteps, let minimum):
            let progress = min(Double(step) / Double(max(totalSteps ?? 1, 1)), 1)
            return minimum + (base - minimum) * 0.5 * (1 + cos(Double.pi * progress))
        case .warmup(let steps, let then):
            if step < steps { return then.learningRate(atStep: 0) * Double(step + 1) / Double(steps) }
            return then.learningRate(atStep: step - steps)
        }
    }
}

/// Where a worker's optimizer steps fall in the learning-rate schedule. Every worker follows the
/// run's round clock: the position of a step depends on the round it belongs to, not on how many
/// steps this worker has taken, so a federated client that sat out rounds (partial participation)
/// resumes at the round's rate, every sampled client of a round uses the same rates (with equal
/// steps per round), and phases with their own step counts (FedRep's head steps) run the schedule
/// at the speed of the rounds.
public struct ScheduleClock: Sendable, Equatable {
    public let unit: ScheduleUnit
    /// S: the local steps of one of this worker's rounds.
    public let stepsPerRound: Int
    public let rounds: Int

    public init(unit: ScheduleUnit, stepsPerRound: Int, rounds: Int) {
        self.unit = unit
        self.stepsPerRound = max(stepsPerRound, 1)
        self.rounds = rounds
    }

    /// The positions the run has: its rounds, or rounds × S steps.
    public var runLength: Int { unit == .rounds ? rounds : rounds * stepsPerRound }

    /// The position of step `step` of `count` steps taken in round `round` (0-based):
    /// round·S + ⌊step·S/count⌋ in steps (round·S + step when count = S), `round` in rounds.
    public func position(round: Int, step: Int, of count: Int) -> Int {
        switch unit {
        case .rounds: return round
        case .steps:
            let offset = count == stepsPerRound ? step : step * stepsPerRound / max(count, 1)
            return round * stepsPerRound + offset
        }
    }
}
