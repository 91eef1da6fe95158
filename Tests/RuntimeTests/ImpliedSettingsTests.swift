import Algorithms
import Datasets
import LearningCore
import Optimizers
import Runtime
import Topologies
import XCTest

/// What follows from a user's choices is the configuration's rule (`withImpliedSettings`), not
/// the command line's: a federated run's star, dropped links, and the layers personalization
/// keeps private.
final class ImpliedSettingsTests: XCTestCase {
    private func base(_ change: (inout RunConfiguration) -> Void = { _ in }) throws -> RunConfiguration {
        var configuration = RunConfiguration(
            runName: "implied", seed: 1, rounds: 10, workers: 4,
            model: ModelSpec(widths: [20, 8, 10], batchNorm: true),
            batchSize: 8, localSteps: 1, algorithm: .adaptThenCombine,
            optimizer: OptimizerSettings(schedule: .constant(0.1)),
            data: .synthetic(seed: 2, trainCount: 400, testCount: 100, featureCount: 20), partition: .iid,
            topology: .fixed(try Topology.generated(.ring, nodeCount: 4)), metricsEvery: 1, evalEvery: 10,
            evaluateWorkers: true, peerTimeoutSeconds: 30)
        change(&configuration)
        return configuration
    }

    func testFederated_TalksToTheServerOnly() throws {
        let configuration = try base { $0.federated = FederatedSettings(clientFraction: 1, proximalMu: 0) }
            .withImpliedSettings()
        XCTAssertEqual(configuration.topology.topology(atRound: 0).graph.edgeCount, 0)
        XCTAssertNoThrow(try configuration.validate())
    }

    func testDroppedLinks_RewriteTheGraphInTheirRounds() throws {
        let configuration = try base { $0.faults = [.dropLink(u: 0, v: 1, rounds: 2...4)] }.withImpliedSettings()
        XCTAssertTrue(configuration.topology.topology(atRound: 0).outNeighbors(of: 0).contains(1))
        XCTAssertFalse(configuration.topology.topology(atRound: 2).outNeighbors(of: 0).contains(1))
        XCTAssertTrue(configuration.topology.topology(atRound: 5).outNeighbors(of: 0).contains(1))
    }

    func testPersonalization_AddsTheLayersItKeeps() throws {
        let network = Network(spec: ModelSpec(widths: [20, 8, 10], batchNorm: true))
        let head = "layers.\(network.layers.count - 1)"
        for algorithm in [PersonalizationSettings.Algorithm.fedPer, .fedRep] {
            let configuration = try base {
                $0.personalization = PersonalizationSettings(algorithm: algorithm)
                $0.personalLayers = ["layers.0"]
            }.withImpliedSettings()
            XCTAssertEqual(configuration.personalLayers, ["layers.0", head], "\(algorithm)")
            XCTAssertEqual(configuration.batchNorm.policy, .averaged)
            XCTAssertNoThrow(try configuration.validate())
            // Applying the rule twice changes nothing.
            XCTAssertEqual(configuration.withImpliedSettings().personalLayers, configuration.personalLayers)
        }
        let fedBN = try base { $0.personalization = PersonalizationSettings(algorithm: .fedBN) }.withImpliedSettings()
        let batchNormLayers = network.layers.indices.filter { network.layers[$0] is BatchNorm }.map { "layers.\($0)" }
        XCTAssertFalse(batchNormLayers.isEmpty)
        XCTAssertEqual(fedBN.personalLayers, batchNormLayers)
        XCTAssertEqual(fedBN.batchNorm.policy, .local)
        let ditto = try base { $0.personalization = PersonalizationSettings(algorithm: .ditto) }.withImpliedSettings()
        XCTAssertEqual(ditto.personalLayers, [])
        XCTAssertEqual(ditto.batchNorm.policy, .averaged)
    }

    /// Without the implied head, FedPer is refused with the reason (a configuration built in code
    /// that skipped the rule).
    func testFedPerWithoutItsHead_IsRefused() throws {
        let configuration = try base { $0.personalization = PersonalizationSettings(algorithm: .fedPer) }
        XCTAssertThrowsError(try configuration.validate()) { error in
            XCTAssertTrue("\(error)".contains("fedper needs a personal head"), "\(error)")
        }
    }
}
