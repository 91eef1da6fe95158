import LearningCore

/// What a push-sum rule exposes of its state, whatever rule it wraps.
public protocol PushSumWeighted {
    /// The worker's push-sum weight wᵢ.
    var weight: Double { get }
}

/// Push-sum around a rule with dense messages, for weights that are column- but not
/// row-stochastic (directed graphs), as in SGP (Assran et al., ICML 2019): the worker keeps a
/// numerator xᵢ and a weight wᵢ (initially 1), runs the wrapped rule's local update from the
/// de-biased zᵢ = xᵢ/wᵢ and adds the change to xᵢ, mixes xᵢ by the wrapped rule and wᵢ by the
/// same row (wᵢ ← Wᵢᵢwᵢ + Σⱼ Wᵢⱼwⱼ, the weight sent as the message's 8-byte body, little-endian
/// Float64), and reports zᵢ. Private coordinates (running statistics kept locally) are never
/// mixed, so they are kept as values, not numerators: never divided by wᵢ.
public struct PushSum<Base: GossipRule>: GossipRule, PushSumWeighted {
    public private(set) var base: Base
    public private(set) var weight = 1.0
    /// The weight sent with this round's message.
    private var sentWeight = 1.0
    private let privateRanges: [Range<Int>]

    public init(context: GossipRuleContext, settings: GossipRuleSettings) {
        base = Base(context: context, settings: settings)
        privateRanges = context.privateRanges
    }

    public static var vectorsPerMessage: Int { Base.vectorsPerMessage }
    public static var sendsBeforeLocalUpdate: Bool { Base.sendsBeforeLocalUpdate }
    public static var survivesRemovals: Bool { Base.survivesRemovals }

    public func exchangePeers(round: Int) -> (sendTo: [Int], receiveFrom: [Int])? { base.exchangePeers(round: round) }

    public func problem(with message: ReceivedGossip) -> String? {
        guard case .dense(let values, let body) = message else { return "a push-sum message must be dense" }
        guard body.count == 8 else { return "push-sum parameters lack their 8-byte weight" }
        let senderWeight = Self.weight(of: body)
        guard senderWeight.isFinite, senderWeight > 0 else {
            return "push-sum weight \(senderWeight) is not a positive number"
        }
        return base.problem(with: .dense(values, body: []))
    }

    public mutating func localUpdate(_ x: inout [Float], steps: inout LocalSteps, round: Int) -> (
        meanLoss: Double, learningRate: Double
    ) {
        let start = model(x)
        var z = start
        let result = base.localUpdate(&z, steps: &steps, round: round)
        let kept = privateRanges.map { Array(z[$0]) }
        z.addScaled(start, by: -1)
        x.addScaled(z, by: 1)
        for (range, values) in zip(privateRanges, kept) { x.replaceSubrange(range, with: values) }
        return result
    }

    public mutating func message(_ x: [Float], round: Int) -> GossipMessage {
        guard case .dense(let values, let body) = base.message(x, round: round), body.isEmpty else {
            preconditionFailure("push-sum wraps rules whose messages are dense values alone")
        }
        sentWeight = weight
        return .dense(values, body: withUnsafeBytes(of: weight.bitPattern.littleEndian) { Array($0) })
    }

    public mutating func combine(
        _ x: inout [Float], row: MixingRow, received: [Int: ReceivedGossip], sent: ReceivedGossip, round: Int
    ) {
        base.combine(
            &x, row: row, received: received.mapValues { withoutWeight($0) }, sent: withoutWeight(sent),
            round: round)
        weight =
            row.selfWeight * sentWeight
            + row.neighbors.reduce(0) { sum, neighbor in
                guard case .dense(_, let body) = received[neighbor.rank] else {
                    preconditionFailure("push-sum: no message from neighbour \(neighbor.rank)")
                }
                return sum + neighbor.weight * Self.weight(of: body)
            }
    }

    /// zᵢ = xᵢ/wᵢ, private coordinates as they are.
    public func model(_ x: [Float]) -> [Float] {
        var z = x
        z.scale(by: Float(1 / weight))
        for range in privateRanges { z.replaceSubrange(range, with: x[range]) }
        return z
    }

    private static func weight(of body: [UInt8]) -> Double {
        Double(bitPattern: UInt64(littleEndian: body.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }))
    }
}

/// A push-sum message as the wrapped rule reads it: the values without the weight.
private func withoutWeight(_ message: ReceivedGossip) -> ReceivedGossip {
    guard case .dense(let values, _) = message else { return message }
    return .dense(values, body: [])
}

extension PushSum {
    /// The push-sum weight (and the weight last sent), then the base rule's state.
    public func save(to writer: inout StateWriter) {
        writer.section("push-sum")
        writer.write(weight)
        writer.write(sentWeight)
        base.save(to: &writer)
    }

    public mutating func restore(from reader: inout StateReader) throws(StateArchiveError) {
        try reader.expectSection("push-sum")
        weight = try reader.readDouble()
        sentWeight = try reader.readDouble()
        try base.restore(from: &reader)
    }
}
