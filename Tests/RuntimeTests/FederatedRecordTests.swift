import Algorithms
import Datasets
import Diagnostics
import Foundation
import LearningCore
import Optimizers
import Runtime
import XCTest

/// What a federated round's record says: Ξ² about the server's model (the size-weighted x̄ the
/// record reports), the sampled clients' learning rate, and per-worker sharpness by rank.
final class FederatedRecordTests: XCTestCase {
    private func federatedConfiguration(fraction: Double) -> RunConfiguration {
        smallConfiguration(workers: 5, rounds: 6, localSteps: 2).with {
            $0.partition = .logNormal(sigma: 1)
            $0.federated = FederatedSettings(clientFraction: fraction, proximalMu: 0)
            $0.topology = .fixed(try! .generated(.solo, nodeCount: 5))
            $0.sharpness.every = 0
        }
    }

    /// x̄ = Σ pᵢxᵢ with pᵢ ∝ n_i over the sampled clients, and Ξ² = (1/m)·Σ‖xᵢ − x̄‖² about that
    /// x̄, computed here in Float64 from the gathered models. Tolerance: x̄ is rounded once to
    /// Float32 (relative 1e-7 per coordinate), Ξ² sums the same Float64 terms in another order
    /// (1e-9 relative). About the plain mean instead, Ξ² differs by ‖x̄ − mean‖², which is
    /// ≥ 1e-3 relative with these unequal shard sizes (checked below).
    func testConsensusDistance_IsAboutTheServersModel() throws {
        let configuration = federatedConfiguration(fraction: 0.6)
        let (coordinator, _) = try simulate(configuration)
        let machine = coordinator.machine
        let sizes = try shards(configuration).map { Double($0.count) }
        let ranks = machine.lastWorkerRanks
        XCTAssertEqual(
            ranks,
            configuration.federated!.aggregator.sampledClients(round: configuration.rounds - 1, workers: 5, seed: 3))
        let models = machine.lastWorkerModels
        let total = ranks.reduce(0) { $0 + sizes[$1] }
        let average = try XCTUnwrap(machine.averageModel)
        var plain = [Double](repeating: 0, count: average.count)
        for (rank, model) in zip(ranks, models) {
            for i in model.indices { plain[i] += Double(model[i]) / Double(models.count) }
            _ = rank
        }
        var weightedError = 0.0
        var shift = 0.0
        for i in average.indices {
            let weighted = zip(ranks, models).reduce(0.0) { $0 + sizes[$1.0] / total * Double($1.1[i]) }
            weightedError = max(weightedError, abs(Double(average[i]) - weighted) / max(abs(weighted), 1e-3))
            shift += (plain[i] - weighted) * (plain[i] - weighted)
        }
        XCTAssertLessThan(weightedError, 1e-6)
        let direct =
            models.reduce(0.0) { sum, model in
                sum + zip(model, average).reduce(0.0) { $0 + Double($1.0 - $1.1) * Double($1.0 - $1.1) }
            } / Double(models.count)
        let recorded = try XCTUnwrap(machine.lastRecord?.consensusDistanceSquared)
        XCTAssertEqual(recorded, direct, accuracy: 1e-9 * direct)
        XCTAssertGreaterThan(shift / direct, 1e-3, "the check cannot tell the two centres apart")
    }

    /// With sampling, each round's learning rate is the sampled clients' (worker 0 was not always
    /// sampled): a schedule in rounds makes every round's rate distinct.
    func testLearningRate_ComesFromTheSampledClients() throws {
        let configuration = federatedConfiguration(fraction: 0.4).with {
            $0.optimizer.schedule = .step(base: 0.1, every: 1, factor: 0.5)
            $0.optimizer.scheduleUnit = .rounds
        }
        let sampledZero = (0..<configuration.rounds).map {
            configuration.federated!.aggregator.sampledClients(round: $0, workers: 5, seed: 3).contains(0)
        }
        XCTAssertTrue(sampledZero.contains(false), "worker 0 is sampled every round: the check is empty")
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("dsgd-fedlr-\(UUID())")
        defer { try? FileManager.default.removeItem(at: directory) }
        let result = Simulation.run(
            configuration: configuration, runID: 42, testSet: try DataLoader.loadTestSet(configuration.data),
            report: try RunReport(directory: directory), data: nil, progress: nil, log: { _ in })
        XCTAssertEqual(result.coordinator.outcome, .completed)
        let records = try String(contentsOf: directory.appendingPathComponent("rounds.jsonl"), encoding: .utf8)
            .split(separator: "\n").map { try JSONDecoder().decode(RoundRecord.self, from: Data($0.utf8)) }
        XCTAssertEqual(records.map(\.learningRate), (0..<configuration.rounds).map { 0.1 * pow(0.5, Double($0)) })
    }

    /// `--sharpness-workers` picks models by rank, not by position among the gathered models.
    func testSharpnessWorkers_SelectByRank() {
        let job = SharpnessJob(
            round: 3, learningRate: 0.1, average: [0], workers: [[10], [12], [13]], workerRanks: [0, 2, 3])
        let selected = job.models(ofRanks: [2, 1, 3])
        XCTAssertEqual(selected.map(\.rank), [2, 3], "rank 1 was not gathered this round")
        XCTAssertEqual(selected.map(\.model), [[12], [13]])
    }

    /// In a run: the sharpness record labelled "worker 1" exists exactly on the rounds where
    /// client 1 was sampled, and measures client 1's model (its loss at the model the client
    /// uploaded, recomputed here).
    func testSharpnessWorkers_InAFederatedRun() throws {
        var configuration = federatedConfiguration(fraction: 0.4)
        configuration.sharpness.every = 1
        configuration.sharpness.workers = [1]
        configuration.sharpness.lanczosIterations = 2
        configuration.sharpness.hutchinsonProbes = 2
        configuration.sharpness.perLayer = false
        let network = Network(spec: configuration.model)
        let subset = try shards(configuration)[0]
        let runner = SharpnessRunner(
            network: network, evaluationSet: subset, settings: configuration.sharpness, seed: 9)
        let result = Simulation.run(
            configuration: configuration, runID: 42, testSet: try DataLoader.loadTestSet(configuration.data),
            report: nil, data: nil, progress: nil, log: { _ in }, trainSubset: subset, sharpness: runner)
        XCTAssertEqual(result.coordinator.outcome, .completed)
        let labelled = result.coordinator.sharpnessRecords.filter { $0.model == "worker 1" }.map(\.round)
        let sampled = (1...configuration.rounds).filter {
            configuration.federated!.aggregator.sampledClients(round: $0 - 1, workers: 5, seed: 3).contains(1)
        }
        XCTAssertEqual(labelled, sampled)
        XCTAssertFalse(sampled.isEmpty)
        XCTAssertLessThan(sampled.count, configuration.rounds)
    }
}
