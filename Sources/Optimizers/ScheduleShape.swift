/// The shape of a learning-rate schedule as a user writes it (`--lr-schedule`), apart from its
/// base rate: `constant`, `step:EVERY:FACTOR`, `multistep:M1,M2,…:FACTOR` or `cosine[:MINIMUM]`.
public enum ScheduleShape: Sendable, Equatable, CustomStringConvertible {
    case constant
    case step(every: Int, factor: Double)
    case multistep(milestones: [Int], factor: Double)
    /// To the end of the run (each worker resolves the length from its own steps per round).
    case cosine(minimum: Double)

    public struct ParseError: Error, CustomStringConvertible {
        public var description: String
    }

    public init(parsing text: String) throws(ParseError) {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        switch parts.first {
        case "constant" where parts.count == 1:
            self = .constant
        case "step" where parts.count == 3:
            guard let every = Int(parts[1]), every > 0, let factor = Double(parts[2]), factor > 0, factor.isFinite
            else {
                throw ParseError(
                    description: "step:EVERY:FACTOR needs a positive integer and a positive factor, got '\(text)'")
            }
            self = .step(every: every, factor: factor)
        case "multistep" where parts.count == 3:
            let milestones = parts[1].split(separator: ",", omittingEmptySubsequences: false).map { text in
                Int(String(text.drop(while: \.isWhitespace).reversed().drop(while: \.isWhitespace).reversed()))
            }
            guard let factor = Double(parts[2]), factor > 0, factor.isFinite, !milestones.isEmpty,
                milestones.allSatisfy({ ($0 ?? 0) > 0 })
            else {
                throw ParseError(
                    description:
                        "multistep:M1,M2,…:FACTOR needs positive integer milestones and a positive factor, got '\(text)'"
                )
            }
            let values = milestones.map { $0! }
            guard zip(values, values.dropFirst()).allSatisfy({ $0 < $1 }) else {
                throw ParseError(description: "multistep milestones must increase, got '\(parts[1])'")
            }
            self = .multistep(milestones: values, factor: factor)
        case "cosine" where parts.count <= 2:
            let minimum = parts.count == 2 ? Double(parts[1]) : 0
            guard let minimum, minimum >= 0, minimum.isFinite else {
                throw ParseError(description: "cosine:MINIMUM needs a number ≥ 0, got '\(text)'")
            }
            self = .cosine(minimum: minimum)
        default:
            throw ParseError(
                description:
                    "'\(text)' is not constant, step:EVERY:FACTOR, multistep:M1,M2,…:FACTOR or cosine[:MINIMUM]")
        }
    }

    /// The schedule from `baseRate`, after a linear warm-up of `warmup` positions when positive.
    public func schedule(baseRate: Double, warmup: Int = 0) -> LearningRateSchedule {
        let schedule: LearningRateSchedule
        switch self {
        case .constant: schedule = .constant(baseRate)
        case .step(let every, let factor): schedule = .step(base: baseRate, every: every, factor: factor)
        case .multistep(let milestones, let factor):
            schedule = .multistep(base: baseRate, milestones: milestones, factor: factor)
        case .cosine(let minimum): schedule = .cosine(base: baseRate, totalSteps: nil, minimum: minimum)
        }
        return warmup > 0 ? .warmup(steps: warmup, then: schedule) : schedule
    }

    /// As it is written on the command line.
    public var description: String {
        switch self {
        case .constant: "constant"
        case .step(let every, let factor): "step:\(every):\(factor)"
        case .multistep(let milestones, let factor):
            "multistep:\(milestones.map(String.init).joined(separator: ",")):\(factor)"
        case .cosine(let minimum): minimum == 0 ? "cosine" : "cosine:\(minimum)"
        }
    }
}
