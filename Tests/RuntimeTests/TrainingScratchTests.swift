import Algorithms
import Datasets
import LearningCore
import Optimizers
import Runtime
import XCTest

/// Workers of one process share one training scratch (workspace and gradient buffer). Nothing in
/// it may carry from one trainer's step to another's: trainers taking turns on a shared scratch
/// must end with exactly the bits of trainers with scratch of their own.
final class TrainingScratchTests: XCTestCase {
    func testTrainersTakingTurnsOnOneScratch_EqualTrainersWithTheirOwn_BitForBit() throws {
        let cases: [(String, ModelSpec, BatchNormSettings)] = [
            ("MLP", ModelSpec(widths: [20, 12, 10]), BatchNormSettings()),
            (
                "MLP with ghost batch norm", ModelSpec(widths: [20, 12, 10], batchNorm: true),
                BatchNormSettings(virtualBatchSize: 4, policy: .averaged)
            ),
        ]
        // Momentum, coupled weight decay, clipping by the global norm (which reads every
        // coordinate of the gradient buffer) and FedProx's proximal term (added to the buffer).
        let optimizer = OptimizerSettings(
            schedule: .constant(0.05), momentumKind: .heavyBall, momentum: 0.9, weightDecay: 0.01,
            gradientClipNorm: 0.5)
        for (name, spec, batchNorm) in cases {
            var configuration = smallConfiguration(workers: 3, rounds: 6)
            configuration.model = spec
            let network = Network(spec: spec)
            let shards = try (0..<3).map {
                try DataLoader.loadShard(configuration.data, partition: .iid, workers: 3, seed: 3, rank: $0)
            }
            let pool = TrainingScratchPool()
            func trainers(sharing: Bool) -> [LocalTrainer] {
                (0..<3).map { rank in
                    LocalTrainer(
                        network: network, shard: shards[rank], batchSize: 8, localSteps: 2, optimizer: optimizer,
                        seed: 3, rank: rank, batchNorm: batchNorm, rounds: 6,
                        scratch: sharing ? pool.scratch(network: network, batchSize: 8) : nil)
                }
            }
            var shared = trainers(sharing: true)
            var own = trainers(sharing: false)
            let start = network.initialParameters(seed: 3)
            let anchor = start.map { $0 * 0.5 }
            var sharedModels = (0..<3).map { rank in start.map { $0 + Float(rank) * 0.01 } }
            var ownModels = sharedModels
            for round in 0..<6 {
                for rank in 0..<3 {
                    let proximal = rank == 1 ? (mu: Float(0.1), anchor: anchor) : nil
                    _ = shared[rank].train(&sharedModels[rank], round: round, proximal: proximal)
                    _ = own[rank].train(&ownModels[rank], round: round, proximal: proximal)
                }
            }
            for rank in 0..<3 {
                XCTAssertEqual(sharedModels[rank], ownModels[rank], "\(name), worker \(rank)")
                XCTAssertNotEqual(sharedModels[rank], start, "\(name): trained")
            }
        }
    }
}
