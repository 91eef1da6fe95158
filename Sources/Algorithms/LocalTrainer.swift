import Datasets
import LearningCore
import Optimizers

/// A worker's local computation: H optimizer steps on mini-batches drawn from its own shard.
/// Pure compute, no I/O; owns its scratch memory so a step allocates nothing.
public struct LocalTrainer {
    public let network: Network
    public let batchSize: Int
    public let localSteps: Int
    public private(set) var sampler: ShardSampler
    public private(set) var optimizer: Optimizer
    private let workspace: NetworkWorkspace
    private var gradient: [Float]

    public init(
        network: Network, shard: Dataset, batchSize: Int, localSteps: Int, optimizer: OptimizerSettings, seed: UInt64,
        rank: Int
    ) {
        self.network = network
        self.batchSize = batchSize
        self.localSteps = localSteps
        sampler = ShardSampler(shard: shard, seed: seed, rank: rank)
        self.optimizer = Optimizer(settings: optimizer, parameterCount: network.parameterCount)
        workspace = NetworkWorkspace(network: network, capacity: batchSize)
        gradient = [Float](repeating: 0, count: network.parameterCount)
    }

    /// Runs `localSteps` steps on `parameters`; returns the mean mini-batch loss (measured before
    /// each step, as PyTorch loops report it) and the learning rate of the first step.
    /// With `proximal` (μ, anchor), each gradient gets μ·(x − anchor) added: FedProx's proximal
    /// term (μ/2)‖x − x_global‖² (Li et al., MLSys 2020).
    public mutating func train(_ parameters: inout [Float], proximal: (mu: Float, anchor: [Float])? = nil) -> (
        meanLoss: Double, learningRate: Double
    ) {
        var lossSum = 0.0
        let learningRate = optimizer.currentLearningRate
        let workspace = self.workspace
        let batchSize = self.batchSize
        for _ in 0..<localSteps {
            sampler.fillNextBatch(workspace, batchSize: batchSize)
            let loss = parameters.withUnsafeBufferPointer { p in
                gradient.withUnsafeMutableBufferPointer { g in
                    workspace.lossAndGradient(
                        parameters: p.baseAddress!, gradient: g.baseAddress!, batchSize: batchSize
                    ).loss
                }
            }
            lossSum += loss
            if let proximal, proximal.mu != 0 {
                gradient.addScaled(parameters, by: proximal.mu)
                gradient.addScaled(proximal.anchor, by: -proximal.mu)
            }
            optimizer.apply(gradient: &gradient, to: &parameters)
        }
        return (lossSum / Double(localSteps), learningRate)
    }
}
