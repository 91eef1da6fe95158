import LearningCore

/// Gradient tracking in the adapt-then-combine form of Pu and Nedić's stochastic gradient
/// tracking (Math. Programming 2021; the deterministic DIGing of Nedić, Olshevsky and Shi, SIAM
/// J. Optim. 2017): besides xᵢ, worker i keeps a tracker yᵢ of the average gradient,
///
///     yᵢ^t     = ỹᵢ^t + gᵢ(xᵢ^t) − gᵢ(xᵢ^{t−1})     (yᵢ⁰ = gᵢ(xᵢ⁰))
///     xᵢ^{t+1} = Σⱼ Wᵢⱼ (xⱼ^t − η_t yⱼ^t)
///     ỹᵢ^{t+1} = Σⱼ Wᵢⱼ yⱼ^t
///
/// where gᵢ is a stochastic gradient on the worker's next mini-batch. With W doubly stochastic
/// the trackers' average stays the average of the latest gradients, which removes the bias
/// heterogeneous data put into D-SGD's fixed point: with full local gradients and a constant
/// step, x converges to the exact global minimizer (D-SGD stops at a distance of order η).
/// On the complete graph with uniform weights it is C-SGD: every xᵢ is x̄ − η·(1/n)Σⱼ gⱼ(x̄).
///
/// One message carries both vectors: xᵢ − η yᵢ, then yᵢ. One gradient per round, plain SGD (the
/// schedule's learning rate; coupled weight decay wd adds the L2 term (wd/2)‖x‖² to every fᵢ;
/// momentum, decoupled weight decay, clipping and local steps are refused at configuration).
public struct GradientTracking: GossipRule {
    public let parameterCount: Int
    /// yᵢ of the current round (after `localUpdate`).
    public private(set) var tracker: [Float]
    /// ỹᵢ: the mixed trackers of the previous round (zero before round 0).
    private var mixedTracker: [Float]
    /// gᵢ at the previous iterate (zero before round 0).
    private var previousGradient: [Float]
    private var step: Float = 0

    public init(context: GossipRuleContext, settings: GossipRuleSettings) {
        parameterCount = context.parameterCount
        let zero = [Float](repeating: 0, count: context.parameterCount)
        tracker = zero
        mixedTracker = zero
        previousGradient = zero
    }

    public static var vectorsPerMessage: Int { 2 }

    public func problem(with message: ReceivedGossip) -> String? {
        guard case .dense(let values, let body) = message, body.isEmpty else {
            return "a gradient-tracking message must be dense values alone"
        }
        guard values.count == 2 * parameterCount else {
            return "a gradient-tracking message has \(values.count) values, expected \(2 * parameterCount) (x and y)"
        }
        return nil
    }

    public mutating func localUpdate(_ x: inout [Float], steps: inout LocalSteps, round: Int) -> (
        meanLoss: Double, learningRate: Double
    ) {
        let learningRate = steps.trainer.learningRate(round: round, step: 0, of: 1)
        var (loss, gradient) = steps.trainer.nextBatchGradient(at: x)
        // Coupled weight decay is the L2 term (wd/2)‖x‖² of the objective: its gradient wd·x.
        let settings = steps.trainer.optimizer.settings
        if settings.weightDecayMode == .coupled && settings.weightDecay != 0 {
            gradient.addScaled(x, by: Float(settings.weightDecay))
        }
        // y = ỹ + g − g_prev, in that order.
        tracker = mixedTracker
        tracker.addScaled(gradient, by: 1)
        tracker.addScaled(previousGradient, by: -1)
        previousGradient = gradient
        step = Float(learningRate)
        return (loss, learningRate)
    }

    public mutating func message(_ x: [Float], round: Int) -> GossipMessage {
        var values = x
        values.addScaled(tracker, by: -step)
        values.append(contentsOf: tracker)
        return .dense(values)
    }

    public mutating func combine(
        _ x: inout [Float], row: MixingRow, received: [Int: ReceivedGossip], sent: ReceivedGossip, round: Int
    ) {
        let d = parameterCount
        // Own terms: x − η y (as sent) and y.
        x.addScaled(tracker, by: -step)
        x.scale(by: Float(row.selfWeight))
        mixedTracker = tracker
        mixedTracker.scale(by: Float(row.selfWeight))
        for neighbor in row.neighbors {
            guard let values = received[neighbor.rank]?.values else {
                preconditionFailure("gradient tracking: no message from neighbour \(neighbor.rank)")
            }
            x.withUnsafeMutableBufferPointer { target in
                BLAS.axpy(count: d, alpha: Float(neighbor.weight), x: values.baseAddress!, y: target.baseAddress!)
            }
            mixedTracker.withUnsafeMutableBufferPointer { target in
                BLAS.axpy(count: d, alpha: Float(neighbor.weight), x: values.baseAddress! + d, y: target.baseAddress!)
            }
        }
    }
}

extension GradientTracking {
    /// yᵢ, ỹᵢ, the previous gradient and the previous step size.
    public func save(to writer: inout StateWriter) {
        writer.section("gradient tracking")
        writer.write(tracker)
        writer.write(mixedTracker)
        writer.write(previousGradient)
        writer.write(step)
    }

    public mutating func restore(from reader: inout StateReader) throws(StateArchiveError) {
        try reader.expectSection("gradient tracking")
        tracker = try reader.readFloats(count: parameterCount, "the gradient tracker")
        mixedTracker = try reader.readFloats(count: parameterCount, "the mixed tracker")
        previousGradient = try reader.readFloats(count: parameterCount, "the previous gradient")
        step = try reader.readFloat()
    }
}
