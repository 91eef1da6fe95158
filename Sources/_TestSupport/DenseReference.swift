import Algorithms
import Datasets
import LearningCore
import Optimizers
import Topologies

/// D-SGD computed the dense way, as an oracle: all n models in one matrix X and one SGEMM
/// X ← W·X per round, with each worker's local update made by the same `LocalTrainer` (same
/// seeds, same shards) that the workers use. Only the plumbing differs from the real run, so a
/// mismatch points at the message passing, buffering or mixing.
public func denseReferenceDSGD(
    network: Network, shards: [Dataset], topology: Topology, algorithm: GossipAlgorithm, batchSize: Int,
    localSteps: Int,
    optimizer: OptimizerSettings, seed: UInt64, rounds: Int
) -> [[Float]] {
    let start = network.initialParameters(seed: seed)
    var trainers = shards.enumerated().map { rank, shard in
        LocalTrainer(
            network: network, shard: shard, batchSize: batchSize, localSteps: localSteps, optimizer: optimizer,
            seed: seed,
            rank: rank)
    }
    var models = [[Float]](repeating: start, count: shards.count)
    for _ in 0..<rounds {
        switch algorithm {
        case .adaptThenCombine:
            for rank in models.indices { _ = trainers[rank].train(&models[rank]) }
            models = Gossip.denseMix(models, mixing: topology)
        case .combineThenAdapt:
            var updates = models
            for rank in models.indices {
                _ = trainers[rank].train(&updates[rank])
                updates[rank].addScaled(models[rank], by: -1)
            }
            models = Gossip.denseMix(models, mixing: topology)
            for rank in models.indices { models[rank].addScaled(updates[rank], by: 1) }
        }
    }
    return models
}

/// Ξ² computed plainly in Float64, with no BLAS: (1/n)·Σᵢ Σₖ (xᵢₖ − x̄ₖ)².
public func directConsensusDistanceSquared(_ models: [[Float]]) -> Double {
    let n = Double(models.count)
    var total = 0.0
    for k in models[0].indices {
        var mean = 0.0
        for model in models { mean += Double(model[k]) }
        mean /= n
        for model in models {
            let d = Double(model[k]) - mean
            total += d * d
        }
    }
    return total / n
}
