import Algorithms
import Datasets
import LearningCore
import Optimizers
import Topologies

/// D-SGD computed the dense way, as an oracle: all n models in one matrix X and one SGEMM
/// X ← W_t·X per round t, with each worker's local update made by the same `LocalTrainer` (same
/// seeds, same shards) that the workers use. Only the plumbing differs from the real run, so a
/// mismatch points at the message passing, buffering, scheduling or mixing. With push-sum the
/// weights w ← W_t·w are mixed alongside and the de-biased X/w is returned.
public func denseReferenceDSGD(
    network: Network, shards: [Dataset], topology schedule: TopologySchedule, algorithm: GossipAlgorithm,
    batchSize: Int,
    localSteps: Int, optimizer: OptimizerSettings, seed: UInt64, rounds: Int, personal: [Range<Int>] = [],
    batchNorm: BatchNormSettings = BatchNormSettings()
) -> [[Float]] {
    let start = network.initialParameters(seed: seed)
    var trainers = shards.enumerated().map { rank, shard in
        LocalTrainer(
            network: network, shard: shard, batchSize: batchSize, localSteps: localSteps, optimizer: optimizer,
            seed: seed,
            rank: rank, batchNorm: batchNorm, rounds: rounds)
    }
    let n = shards.count
    let pushSum = schedule.requiresPushSum
    var models = [[Float]](repeating: start, count: n)
    var weights = [Double](repeating: 1, count: n)
    // Under push-sum, personal coordinates are values, not numerators: never divided by wᵢ.
    func debiased(_ rank: Int) -> [Float] {
        var z = models[rank]
        if pushSum {
            z.scale(by: Float(1 / weights[rank]))
            for range in personal { z.replaceSubrange(range, with: models[rank][range]) }
        }
        return z
    }
    for round in 0..<rounds {
        let topology = schedule.topology(atRound: round)
        // Each worker's local update, computed exactly as the worker computes it.
        var updates = [[Float]]()
        for rank in 0..<n {
            if !pushSum && algorithm == .adaptThenCombine {
                _ = trainers[rank].train(&models[rank], round: round)
                continue
            }
            let before = debiased(rank)
            var after = before
            _ = trainers[rank].train(&after, round: round)
            after.addScaled(before, by: -1)
            updates.append(after)
        }
        // Personal coordinates are not mixed: they keep each worker's trained value.
        var trained = models
        if algorithm == .combineThenAdapt || pushSum {
            for rank in 0..<n { trained[rank].addScaled(updates[rank], by: 1) }
        }
        switch algorithm {
        case .adaptThenCombine:
            if pushSum { for rank in 0..<n { models[rank].addScaled(updates[rank], by: 1) } }
            models = Gossip.denseMix(models, mixing: topology)
        case .combineThenAdapt:
            models = Gossip.denseMix(models, mixing: topology)
            for rank in 0..<n { models[rank].addScaled(updates[rank], by: 1) }
        case .choco, .gradientTracking:
            preconditionFailure("the dense D-SGD reference runs atc and cta; see denseReferenceGradientTracking")
        }
        for rank in 0..<n { for range in personal { models[rank].replaceSubrange(range, with: trained[rank][range]) } }
        if pushSum {
            let w = topology.denseMixingMatrix
            weights = (0..<n).map { i in (0..<n).reduce(0.0) { $0 + w[i * n + $1] * weights[$1] } }
        }
    }
    return (0..<n).map(debiased)
}

/// Gradient tracking computed the dense way, as an oracle for the message passing: X, Y and G
/// as n × d matrices, per round G' = the workers' gradients at X (the same trainers, seeds and
/// shards as the workers), Y ← Ỹ + G' − G, X ← W_t·(X − η_t Y), Ỹ ← W_t·Y (one SGEMM each).
public func denseReferenceGradientTracking(
    network: Network, shards: [Dataset], topology schedule: TopologySchedule, batchSize: Int,
    optimizer: OptimizerSettings, seed: UInt64, rounds: Int
) -> [[Float]] {
    let n = shards.count
    var trainers = shards.enumerated().map { rank, shard in
        LocalTrainer(
            network: network, shard: shard, batchSize: batchSize, localSteps: 1, optimizer: optimizer, seed: seed,
            rank: rank, rounds: rounds)
    }
    let d = network.parameterCount
    var x = [[Float]](repeating: network.initialParameters(seed: seed), count: n)
    var mixedY = [[Float]](repeating: [Float](repeating: 0, count: d), count: n)
    var previous = mixedY
    for round in 0..<rounds {
        let topology = schedule.topology(atRound: round)
        var y = mixedY
        var stepped = x
        for rank in 0..<n {
            let rate = Float(trainers[rank].learningRate(round: round, step: 0, of: 1))
            var gradient = trainers[rank].nextBatchGradient(at: x[rank]).gradient
            if optimizer.weightDecayMode == .coupled { gradient.addScaled(x[rank], by: Float(optimizer.weightDecay)) }
            y[rank].addScaled(gradient, by: 1)
            y[rank].addScaled(previous[rank], by: -1)
            previous[rank] = gradient
            stepped[rank].addScaled(y[rank], by: -rate)
        }
        x = Gossip.denseMix(stepped, mixing: topology)
        mixedY = Gossip.denseMix(y, mixing: topology)
    }
    return x
}

/// CHOCO-SGD in the paper's matrix form (Koloskova et al., ICML 2019, Algorithm 1), as an oracle
/// for the message passing: X½ = the workers' local steps (the same trainers as the workers),
/// Q = each worker's compression of X½ − X̂ (the same compressor and random stream), X̂ ← X̂ + Q,
/// X ← X½ + γ(W_t − I)X̂ (one SGEMM).
public func denseReferenceChoco(
    network: Network, shards: [Dataset], topology schedule: TopologySchedule, batchSize: Int, localSteps: Int,
    optimizer: OptimizerSettings, seed: UInt64, rounds: Int, compressor: Compressor, consensusStep: Float
) -> [[Float]] {
    let n = shards.count
    var trainers = shards.enumerated().map { rank, shard in
        LocalTrainer(
            network: network, shard: shard, batchSize: batchSize, localSteps: localSteps, optimizer: optimizer,
            seed: seed, rank: rank, rounds: rounds)
    }
    var generators = (0..<n).map {
        SplitMix64(seed: seed, stream: ChocoGossip.compressionStream, substream: UInt64($0))
    }
    var x = [[Float]](repeating: network.initialParameters(seed: seed), count: n)
    var publicCopies = [[Float]](repeating: [Float](repeating: 0, count: network.parameterCount), count: n)
    for round in 0..<rounds {
        for rank in 0..<n {
            _ = trainers[rank].train(&x[rank], round: round)
            var difference = x[rank]
            difference.addScaled(publicCopies[rank], by: -1)
            let q = difference.withUnsafeBufferPointer { compressor.compress($0, generator: &generators[rank]) }
            let values = q.decoded()
            for i in values.indices { publicCopies[rank][i] += values[i] }
        }
        let mixed = Gossip.denseMix(publicCopies, mixing: schedule.topology(atRound: round))
        for rank in 0..<n {
            var step = mixed[rank]
            step.addScaled(publicCopies[rank], by: -1)
            x[rank].addScaled(step, by: consensusStep)
        }
    }
    return x
}

/// The fixed-topology convenience.
public func denseReferenceDSGD(
    network: Network, shards: [Dataset], topology: Topology, algorithm: GossipAlgorithm, batchSize: Int,
    localSteps: Int,
    optimizer: OptimizerSettings, seed: UInt64, rounds: Int
) -> [[Float]] {
    denseReferenceDSGD(
        network: network, shards: shards, topology: .fixed(topology), algorithm: algorithm, batchSize: batchSize,
        localSteps: localSteps, optimizer: optimizer, seed: seed, rounds: rounds)
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
