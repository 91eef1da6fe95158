import LearningCore

/// D-SGD in adapt-then-combine (diffusion) form: ψᵢ = local steps from xᵢ, sent to the
/// out-neighbours; xᵢ ← Wᵢᵢψᵢ + Σⱼ Wᵢⱼψⱼ (Sayed, Found. Trends Mach. Learn. 2014; the D-SGD of
/// Lian et al. 2017 with the update before the averaging).
public struct AdaptThenCombine: DiffusionRule {
    public let parameterCount: Int

    public init(context: GossipRuleContext, settings: GossipRuleSettings) {
        parameterCount = context.parameterCount
    }

    public mutating func combine(
        _ x: inout [Float], row: MixingRow, received: [Int: ReceivedGossip], sent: ReceivedGossip, round: Int
    ) {
        let terms = Self.terms(row, received)
        withExtendedLifetime(received) {
            Gossip.adaptThenCombine(&x, selfWeight: Float(row.selfWeight), neighbors: terms)
        }
    }

    /// C-SGD: x ← x̄ (each chunk copied once, from where it is).
    public mutating func combine(
        _ x: inout [Float], average: [AverageChunk], sent: UnsafeBufferPointer<Float>, round: Int
    ) {
        AverageChunk.checkCover(average, count: x.count)
        x.withUnsafeMutableBufferPointer { y in
            for chunk in average {
                _ = UnsafeMutableBufferPointer(rebasing: y[chunk.range]).update(fromContentsOf: chunk.values)
            }
        }
    }
}

/// D-SGD in combine-then-adapt form, as D-PSGD (Lian et al., NeurIPS 2017): xᵢ is sent before
/// the local steps (the models travel while the worker trains) and the update is added after
/// mixing: xᵢ ← Σⱼ Wᵢⱼxⱼ + Δᵢ(xᵢ), Δᵢ the change the local steps made to xᵢ.
public struct CombineThenAdapt: DiffusionRule {
    public let parameterCount: Int

    public init(context: GossipRuleContext, settings: GossipRuleSettings) {
        parameterCount = context.parameterCount
    }

    public static var sendsBeforeLocalUpdate: Bool { true }

    public mutating func combine(
        _ x: inout [Float], row: MixingRow, received: [Int: ReceivedGossip], sent: ReceivedGossip, round: Int
    ) {
        guard let sent = sent.values else { preconditionFailure("CTA sends dense models") }
        let terms = Self.terms(row, received)
        withExtendedLifetime(received) {
            Gossip.combineThenAdapt(&x, sent: sent, selfWeight: Float(row.selfWeight), neighbors: terms)
        }
    }

    /// C-SGD with the update after the averaging: x ← x̄ + (trained − sent), chunk by chunk.
    public mutating func combine(
        _ x: inout [Float], average: [AverageChunk], sent: UnsafeBufferPointer<Float>, round: Int
    ) {
        AverageChunk.checkCover(average, count: x.count)
        Gossip.combineThenAdapt(&x, sent: sent, average: average)
    }
}

/// What ATC and CTA share: the worker's local steps as the update, one model as the message
/// (nothing else), the all-reduce's average usable, and no state about peers (so removals are
/// survived).
public protocol DiffusionRule: GossipRule {
    var parameterCount: Int { get }
}

extension DiffusionRule {
    public static var vectorsPerMessage: Int { 1 }
    public static var combinesAverages: Bool { true }
    public static var survivesRemovals: Bool { true }

    public func problem(with message: ReceivedGossip) -> String? {
        guard case .dense(let values, let body) = message else { return "a model must travel as dense values" }
        guard values.count == parameterCount else {
            return "parameters have \(values.count) values, expected \(parameterCount)"
        }
        guard body.isEmpty else { return "a model message with a \(body.count)-byte body (none expected)" }
        return nil
    }

    public mutating func localUpdate(_ x: inout [Float], steps: inout LocalSteps, round: Int) -> (
        meanLoss: Double, learningRate: Double
    ) {
        steps.train(&x, round: round)
    }

    public mutating func message(_ x: [Float], round: Int) -> GossipMessage { .dense(x) }

    /// No state between rounds: the section name alone, so a checkpoint of another rule is refused.
    public func save(to writer: inout StateWriter) { writer.section("\(Self.self)") }
    public mutating func restore(from reader: inout StateReader) throws(StateArchiveError) {
        try reader.expectSection("\(Self.self)")
    }

    /// The neighbours' terms of W's row, in the row's order.
    static func terms(_ row: MixingRow, _ received: [Int: ReceivedGossip]) -> [Gossip.Term] {
        row.neighbors.map { neighbor in
            guard let values = received[neighbor.rank]?.values else {
                preconditionFailure("no model from neighbour \(neighbor.rank)")
            }
            return Gossip.Term(weight: Float(neighbor.weight), values: values)
        }
    }
}
