import Datasets
import LearningCore
import Optimizers

/// How batch norm trains and what happens to its running statistics across workers.
public struct BatchNormSettings: Sendable, Equatable, Codable {
    /// Across workers: what gossip (or the server) does with the running statistics.
    public enum Policy: String, Sendable, Codable, CaseIterable {
        /// Mixed with the topology's weights like the parameters (one buffer, one averaging).
        case averaged
        /// Never sent, never mixed: each worker keeps its own (as FedBN does for the whole layer).
        case local
    }

    /// Which running statistics x̄ (the average model) is evaluated with.
    public enum AverageModelStatistics: String, Sendable, Codable, CaseIterable {
        /// The average of the workers' running statistics (what averaging the buffers gives).
        case averaged
        /// Recomputed for x̄'s own weights on the coordinator's fixed training subset: the exact
        /// mean of the batch statistics of consecutive batches of the training batch size.
        case recomputed
    }

    /// Ghost batch size (Hoffer et al.'s |B_S|); nil normalises the whole per-worker batch. Must
    /// divide the per-worker batch size.
    public var virtualBatchSize: Int?
    public var runningStatisticsRule: RunningStatisticsRule
    /// PyTorch's convention: running ← (1 − momentum)·running + momentum·batch.
    public var momentum: Double
    public var policy: Policy
    public var averageModelStatistics: AverageModelStatistics
    /// Training examples the recomputation uses.
    public var recomputeExamples: Int

    public init(
        virtualBatchSize: Int? = nil, runningStatisticsRule: RunningStatisticsRule = .sequential,
        momentum: Double = 0.1, policy: Policy = .averaged, averageModelStatistics: AverageModelStatistics = .averaged,
        recomputeExamples: Int = 4_096
    ) {
        self.recomputeExamples = recomputeExamples
        self.virtualBatchSize = virtualBatchSize
        self.runningStatisticsRule = runningStatisticsRule
        self.momentum = momentum
        self.policy = policy
        self.averageModelStatistics = averageModelStatistics
    }

    /// The training-mode normalisation for a per-worker batch.
    public var trainingMode: NormalizationMode { .batchStatistics(ghostBatchSize: virtualBatchSize) }
}

/// A worker's local computation: H optimizer steps on mini-batches drawn from its own shard.
/// Pure compute, no I/O; owns its scratch memory so a step allocates nothing.
public struct LocalTrainer {
    public let network: Network
    public let batchSize: Int
    public let localSteps: Int
    public private(set) var sampler: ShardSampler
    public private(set) var optimizer: Optimizer
    public let batchNorm: BatchNormSettings
    /// Where each step falls in the learning-rate schedule.
    public let clock: ScheduleClock
    /// The workspace and the parameter gradient: scratch, shared with other trainers when given.
    private let scratch: TrainingScratch
    private var workspace: NetworkWorkspace { scratch.workspace }
    private let stateRanges: [Range<Int>]
    private var savedState: [Float]
    /// Optimizer states of the phases other than 0 (see `train`).
    private var phaseOptimizers: [Int: Optimizer] = [:]

    public init(
        network: Network, shard: Dataset, batchSize: Int, localSteps: Int, optimizer: OptimizerSettings, seed: UInt64,
        rank: Int, batchNorm: BatchNormSettings = BatchNormSettings(), rounds: Int = 1, scratch: TrainingScratch? = nil
    ) {
        self.network = network
        clock = ScheduleClock(unit: optimizer.scheduleUnit, stepsPerRound: localSteps, rounds: rounds)
        var optimizer = optimizer
        optimizer.schedule = optimizer.schedule.resolved(runLength: clock.runLength)
        self.batchNorm = batchNorm
        stateRanges = network.stateRanges
        savedState = [Float](repeating: 0, count: stateRanges.reduce(0) { $0 + $1.count })
        self.batchSize = batchSize
        self.localSteps = localSteps
        sampler = ShardSampler(shard: shard, seed: seed, rank: rank)
        self.optimizer = Optimizer(settings: optimizer, parameterCount: network.parameterCount)
        if let scratch {
            precondition(
                scratch.fits(network: network, batchSize: batchSize), "the shared scratch is for another model or batch"
            )
            self.scratch = scratch
        } else {
            self.scratch = TrainingScratch(network: network, batchSize: batchSize)
        }
    }

    /// Forgets the optimizer state of every phase (momentum traces back to zero), keeping each
    /// one's step count: a federated client's fresh local optimizer for a round (`ClientMomentum`).
    public mutating func resetOptimizerState() {
        optimizer.resetState()
        for phase in phaseOptimizers.keys { phaseOptimizers[phase]!.resetState() }
    }

    /// Runs `localSteps` steps on `parameters` in round `round` (0-based; the schedule's positions
    /// come from `clock`, or from the optimizer's own step counter when nil); returns the mean
    /// mini-batch loss (measured before each step, as PyTorch loops report it) and the learning
    /// rate of the first step.
    /// With `proximal` (μ, anchor), each gradient gets μ·(x − anchor) added: FedProx's proximal
    /// term (μ/2)‖x − x_global‖² (Li et al., MLSys 2020).
    ///
    /// Batch norm trains on batch (or ghost-batch) statistics; after each gradient the running
    /// statistics absorb the step's statistics, and the optimizer step leaves them alone (weight
    /// decay, momentum and the proximal term apply to parameters only).
    ///
    /// `steps` overrides the number of local steps; coordinates in `frozen` are not trained (they
    /// keep their values through every step: FedRep's alternating head and body phases). `phase`
    /// picks an optimizer state of its own (momentum, step count) for each phase, as separate
    /// optimizers for head and body would: a phase's state for the coordinates it freezes never
    /// reaches them, since they are restored after every step.
    public mutating func train(
        _ parameters: inout [Float], round: Int?, proximal: (mu: Float, anchor: [Float])? = nil, steps: Int? = nil,
        frozen: [Range<Int>] = [], phase: Int = 0
    ) -> (meanLoss: Double, learningRate: Double) {
        if phase != 0 {
            let phaseOptimizer =
                phaseOptimizers.removeValue(forKey: phase)
                ?? Optimizer(settings: optimizer.settings, parameterCount: network.parameterCount)
            phaseOptimizers[phase] = optimizer
            optimizer = phaseOptimizer
        }
        defer {
            if phase != 0 {
                let main = phaseOptimizers.removeValue(forKey: phase)!
                phaseOptimizers[phase] = optimizer
                optimizer = main
            }
        }
        let steps = steps ?? localSteps
        // The schedule position of each step (nil: the optimizer's own counter).
        let clock = self.clock
        func position(_ step: Int) -> Int? { round.map { clock.position(round: $0, step: step, of: steps) } }
        let learningRate =
            position(0).map { optimizer.settings.schedule.learningRate(atStep: $0) } ?? optimizer.currentLearningRate
        guard steps > 0 else { return (0, learningRate) }
        let kept = stateRanges + frozen
        if savedState.count < kept.reduce(0, { $0 + $1.count }) {
            savedState = [Float](repeating: 0, count: kept.reduce(0) { $0 + $1.count })
        }
        var lossSum = 0.0
        let scratch = self.scratch
        let workspace = scratch.workspace
        let batchSize = self.batchSize
        let batchNorm = self.batchNorm
        for step in 0..<steps {
            sampler.fillNextBatch(workspace, batchSize: batchSize)
            let loss = parameters.withUnsafeBufferPointer { p in
                scratch.gradient.withUnsafeMutableBufferPointer { g in
                    workspace.lossAndGradient(
                        parameters: p.baseAddress!, gradient: g.baseAddress!, batchSize: batchSize,
                        normalization: batchNorm.trainingMode
                    ).loss
                }
            }
            if !stateRanges.isEmpty {
                parameters.withUnsafeMutableBufferPointer {
                    workspace.updateRunningStatistics(
                        parameters: $0.baseAddress!, batchSize: batchSize, ghostBatchSize: batchNorm.virtualBatchSize,
                        rule: batchNorm.runningStatisticsRule, momentum: Float(batchNorm.momentum))
                }
            }
            var offset = 0
            for range in kept {
                savedState.replaceSubrange(offset..<(offset + range.count), with: parameters[range])
                offset += range.count
            }
            lossSum += loss
            if let proximal, proximal.mu != 0 {
                scratch.gradient.addScaled(parameters, by: proximal.mu)
                scratch.gradient.addScaled(proximal.anchor, by: -proximal.mu)
            }
            optimizer.apply(gradient: &scratch.gradient, to: &parameters, scheduleStep: position(step))
            offset = 0
            for range in kept {
                parameters.replaceSubrange(range, with: savedState[offset..<(offset + range.count)])
                offset += range.count
            }
        }
        return (lossSum / Double(steps), learningRate)
    }

    /// The next mini-batch's mean loss and gradient at `parameters` (batch norm in training mode),
    /// without a step: for trainers that combine gradients themselves (APFL, additive).
    public mutating func nextBatchGradient(at parameters: [Float]) -> (loss: Double, gradient: [Float]) {
        sampler.fillNextBatch(workspace, batchSize: batchSize)
        let scratch = self.scratch
        let workspace = scratch.workspace
        let batchSize = self.batchSize
        let mode = batchNorm.trainingMode
        let loss = parameters.withUnsafeBufferPointer { p in
            scratch.gradient.withUnsafeMutableBufferPointer { g in
                workspace.lossAndGradient(
                    parameters: p.baseAddress!, gradient: g.baseAddress!, batchSize: batchSize, normalization: mode
                ).loss
            }
        }
        return (loss, scratch.gradient)
    }

    /// The learning rate of step `step` of `count` in round `round` (0-based).
    public func learningRate(round: Int, step: Int, of count: Int) -> Double {
        optimizer.settings.schedule.learningRate(atStep: clock.position(round: round, step: step, of: count))
    }

    /// parameters ← parameters + optimizer(gradient): one step with this trainer's optimizer, at
    /// step `step` of `count` in round `round` (0-based) on the schedule.
    public mutating func applyStep(
        gradient: inout [Float], to parameters: inout [Float], round: Int, step: Int, of count: Int
    ) {
        optimizer.apply(
            gradient: &gradient, to: &parameters,
            scheduleStep: clock.position(round: round, step: step, of: count))
    }
}

extension LocalTrainer: Checkpointable {
    /// The data order and position, the optimizer (step and momentum) and the optimizers of the
    /// other phases (FedRep's head steps); the workspace and gradient are scratch.
    public func save(to writer: inout StateWriter) {
        writer.section("local trainer")
        sampler.save(to: &writer)
        optimizer.save(to: &writer)
        writer.write(phaseOptimizers.keys.sorted())
        for phase in phaseOptimizers.keys.sorted() { phaseOptimizers[phase]!.save(to: &writer) }
    }

    public mutating func restore(from reader: inout StateReader) throws(StateArchiveError) {
        try reader.expectSection("local trainer")
        try sampler.restore(from: &reader)
        try optimizer.restore(from: &reader)
        var phases: [Int: Optimizer] = [:]
        for phase in try reader.readInts() {
            var phaseOptimizer = Optimizer(settings: optimizer.settings, parameterCount: network.parameterCount)
            try phaseOptimizer.restore(from: &reader)
            phases[phase] = phaseOptimizer
        }
        phaseOptimizers = phases
    }
}

/// A training step's scratch memory: the workspace (the input batch, activations and their
/// gradients) and the parameter gradient. Nothing in it carries from one step to the next, so
/// trainers that run one after another on one thread (the workers of one process) can share one:
/// it then stays in cache from one worker's step to the next instead of each worker's own copy
/// being fetched from memory (with a hundred workers to a process, every worker's buffers are
/// evicted before its next turn).
public final class TrainingScratch {
    let workspace: NetworkWorkspace
    var gradient: [Float]

    public init(network: Network, batchSize: Int) {
        workspace = NetworkWorkspace(network: network, capacity: batchSize)
        gradient = [Float](repeating: 0, count: network.parameterCount)
    }

    func fits(network: Network, batchSize: Int) -> Bool {
        workspace.network.spec == network.spec && workspace.capacity == batchSize
    }
}

/// One `TrainingScratch` per model and batch size, for trainers that take turns on one thread.
public final class TrainingScratchPool {
    private var scratches: [TrainingScratch] = []

    public init() {}

    public func scratch(network: Network, batchSize: Int) -> TrainingScratch {
        if let found = scratches.first(where: { $0.fits(network: network, batchSize: batchSize) }) { return found }
        let made = TrainingScratch(network: network, batchSize: batchSize)
        scratches.append(made)
        return made
    }
}
