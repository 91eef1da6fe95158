import Algorithms
import Datasets
import Diagnostics
import LearningCore
import Optimizers
import Runtime
import Topologies
import Transport
import XCTest
import _TestSupport

/// Batch norm and the large-batch regime in whole runs: gossip against the dense reference under
/// both cross-worker policies, the optimizer leaving running statistics alone, recomputed
/// statistics for x̄, regime adaptation, and the configuration errors.
final class BatchNormRunTests: XCTestCase {
    private func batchNormConfiguration(policy: BatchNormSettings.Policy, workers: Int = 4) -> RunConfiguration {
        var configuration = smallConfiguration(workers: workers, rounds: 10, momentum: 0.9)
        configuration.model = ModelSpec(widths: [20, 12, 10], batchNorm: true)
        configuration.optimizer.weightDecay = 0.01
        configuration.batchNorm = BatchNormSettings(virtualBatchSize: 4, policy: policy)
        return configuration
    }

    /// Ghost batch norm over gossip equals the dense X ← W·X reference whose workers train with the
    /// same LocalTrainer; under `local` the running statistics are excluded from mixing (the
    /// reference restores them), under `averaged` they are mixed like parameters. Tolerance as in
    /// SimulationTests (1e-5 relative).
    func testGossipWithBatchNorm_MatchesDenseReference_UnderBothPolicies() throws {
        for algorithm in [GossipAlgorithm.adaptThenCombine, .combineThenAdapt] {
            for policy in BatchNormSettings.Policy.allCases {
                var configuration = batchNormConfiguration(policy: policy)
                configuration.algorithm = algorithm
                try configuration.validate()
                let network = Network(spec: configuration.model)
                let local = configuration.localRanges(in: network.layout)
                XCTAssertEqual(local, policy == .local ? network.stateRanges : [])
                let (_, workers) = try simulate(configuration)
                let reference = denseReferenceDSGD(
                    network: network, shards: try shards(configuration), topology: configuration.topology,
                    algorithm: algorithm, batchSize: configuration.batchSize, localSteps: 1,
                    optimizer: configuration.optimizer, seed: configuration.seed, rounds: configuration.rounds,
                    personal: local, batchNorm: configuration.batchNorm)
                for worker in workers {
                    XCTAssertLessThan(
                        relativeDistance(worker.machine.parameters, reference[worker.machine.rank!]), 1e-5,
                        "\(algorithm) \(policy)")
                }
                let statistics = workers.map { Array($0.machine.parameters[network.stateRanges[0]]) }
                XCTAssertNotEqual(statistics[0], Array(repeating: 0, count: statistics[0].count), "statistics moved")
                XCTAssertNotEqual(statistics[0], statistics[1], "ring neighbours differ either way")
            }
        }
    }

    /// Push-sum with statistics kept local: the kept running statistics are values, not push-sum
    /// numerators, so they are never divided by the changing weight wᵢ. Against the dense
    /// reference (1e-5 relative, as above), on an irregular digraph where the weights move.
    func testPushSumWithLocalStatistics_AreNotRescaledByTheWeight() throws {
        let directed = try Graph(
            nodeCount: 4, edges: [(0, 1), (1, 2), (2, 3), (3, 0), (0, 2)], directed: true)
        for algorithm in [GossipAlgorithm.adaptThenCombine, .combineThenAdapt] {
            var configuration = batchNormConfiguration(policy: .local)
            configuration.algorithm = algorithm
            configuration.topology = .fixed(try Topology(name: "d", graph: directed, weights: .columnStochastic))
            XCTAssertTrue(configuration.topology.requiresPushSum)
            try configuration.validate()
            let network = Network(spec: configuration.model)
            let (_, workers) = try simulate(configuration)
            XCTAssertTrue(workers.contains { abs($0.machine.pushSumWeight - 1) > 1e-2 }, "weights move")
            let reference = denseReferenceDSGD(
                network: network, shards: try shards(configuration), topology: configuration.topology,
                algorithm: algorithm, batchSize: configuration.batchSize, localSteps: 1,
                optimizer: configuration.optimizer, seed: configuration.seed, rounds: configuration.rounds,
                personal: network.stateRanges, batchNorm: configuration.batchNorm)
            for worker in workers {
                let rank = worker.machine.rank!
                for range in network.stateRanges {
                    XCTAssertLessThan(
                        relativeDistance(Array(worker.machine.model[range]), Array(reference[rank][range])), 1e-5,
                        "\(algorithm) worker \(rank) statistics")
                    XCTAssertEqual(
                        Array(worker.machine.model[range]), Array(worker.machine.parameters[range]),
                        "kept statistics are values, not numerators")
                }
                XCTAssertLessThan(relativeDistance(worker.machine.model, reference[rank]), 1e-5, "\(algorithm)")
            }
        }
    }

    /// Running statistics follow the rule exactly (not weight decay, momentum or the proximal term)
    /// while the parameters do move by the optimizer.
    func testOptimizerStep_LeavesRunningStatisticsToTheirRule() throws {
        let configuration = batchNormConfiguration(policy: .averaged)
        let network = Network(spec: configuration.model)
        let shard = try shards(configuration)[0]
        var settings = configuration.optimizer
        settings.weightDecay = 0.5
        var trainer = LocalTrainer(
            network: network, shard: shard, batchSize: 8, localSteps: 1, optimizer: settings, seed: 1, rank: 0,
            batchNorm: configuration.batchNorm)
        let start = network.initialParameters(seed: 1)
        var trained = start
        _ = trainer.train(&trained, round: 0, proximal: (mu: 0.3, anchor: [Float](repeating: 5, count: start.count)))
        // The same batch by hand: the sampler is seeded by (seed, rank).
        var sampler = ShardSampler(shard: shard, seed: 1, rank: 0)
        let workspace = NetworkWorkspace(network: network, capacity: 8)
        sampler.fillNextBatch(workspace, batchSize: 8)
        var expected = start
        var gradient = [Float](repeating: 0, count: start.count)
        expected.withUnsafeMutableBufferPointer { p in
            gradient.withUnsafeMutableBufferPointer { g in
                _ = workspace.lossAndGradient(
                    parameters: p.baseAddress!, gradient: g.baseAddress!, batchSize: 8,
                    normalization: .batchStatistics(ghostBatchSize: 4))
            }
            workspace.updateRunningStatistics(
                parameters: p.baseAddress!, batchSize: 8, ghostBatchSize: 4, rule: .sequential, momentum: 0.1)
        }
        for range in network.stateRanges {
            XCTAssertEqual(Array(trained[range]), Array(expected[range]))
            XCTAssertNotEqual(Array(trained[range]), Array(start[range]))
        }
        let weights = network.layout["layers.0.weight"]!.range
        XCTAssertNotEqual(Array(trained[weights]), Array(start[weights]))
    }

    /// Under the local policy the statistics never appear in a message a worker sends to a
    /// neighbour (zeros there), while the parameters do.
    func testLocalStatistics_AreNeverSentToNeighbours() throws {
        let configuration = batchNormConfiguration(policy: .local)
        let test = try DataLoader.loadTestSet(configuration.data)
        let hub = InMemoryHub(recordingSends: true)
        let result = Simulation.run(
            configuration: configuration, runID: 5, testSet: test, report: nil, data: nil, progress: nil,
            log: { _ in }, hub: hub)
        XCTAssertEqual(result.coordinator.outcome, .completed)
        let network = Network(spec: configuration.model)
        let gossip = hub.sent.filter { $0.envelope.header.kind == .parameters }
        XCTAssertFalse(gossip.isEmpty)
        for message in gossip {
            let values = message.envelope.payload!.array
            for range in network.stateRanges { XCTAssertTrue(values[range].allSatisfy { $0 == 0 }) }
            XCTAssertFalse(values[network.layout["layers.0.weight"]!.range].allSatisfy { $0 == 0 })
        }
    }

    /// The recomputed statistics of the first batch-norm layer are the mean over groups of the
    /// group means and unbiased variances of its input, computed here directly with the Linear layer.
    func testRecomputedStatistics_AreTheMeanOfGroupStatistics() throws {
        let network = Network(spec: ModelSpec(widths: [20, 12, 10], batchNorm: true))
        let data = SyntheticClassification(seed: 4, featureCount: 20, trainCount: 70, testCount: 1).examples(
            Array(0..<70))
        var parameters = network.initialParameters(seed: 2)
        RunningStatisticsEstimator.recompute(&parameters, network: network, dataset: data, groupSize: 16)
        let linear = network.layers[0]
        let workspace = NetworkWorkspace(network: network, capacity: 64)
        data.copyRows(0..<64, into: workspace.input, labels: workspace.labels)
        var hidden = [Float](repeating: 0, count: 64 * 12)
        linear.forward(
            input: workspace.input, output: &hidden, batchSize: 64, parameters: parameters,
            context: LayerContext(normalization: .runningStatistics))
        let offset = network.layerOffsets[1]
        for c in 0..<12 {
            var means = 0.0
            var variances = 0.0
            for group in 0..<4 {  // 64 of the 70 rows: the partial last group is dropped
                let values = (0..<16).map { Double(hidden[(group * 16 + $0) * 12 + c]) }
                let mean = values.reduce(0, +) / 16
                means += mean / 4
                variances += values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / 15 / 4
            }
            XCTAssertEqual(Double(parameters[offset + 24 + c]), means, accuracy: 1e-5 * max(1, abs(means)))
            XCTAssertEqual(Double(parameters[offset + 36 + c]), variances, accuracy: 1e-5 * max(1, variances))
        }
    }

    /// With `--average-model-bn recomputed` the recorded test figures of x̄ are those of the
    /// workers' average with its statistics recomputed (and differ from the averaged statistics').
    func testAverageModelEvaluation_UsesTheChosenStatistics() throws {
        var configuration = batchNormConfiguration(policy: .local)
        configuration.batchNorm.averageModelStatistics = .recomputed
        configuration.batchNorm.recomputeExamples = 64
        let test = try DataLoader.loadTestSet(configuration.data)
        let statisticsSet = try DataLoader.loadTrainSubset(configuration.data, count: 64, seed: configuration.seed)
        let result = Simulation.run(
            configuration: configuration, runID: 5, testSet: test, report: nil, data: nil, progress: nil,
            log: { _ in }, statisticsSet: statisticsSet)
        XCTAssertEqual(result.coordinator.outcome, .completed)
        let network = Network(spec: configuration.model)
        let models = result.workers.sorted { $0.machine.rank! < $1.machine.rank! }.map(\.machine.parameters)
        let buffers = models.map { model -> UnsafeMutableBufferPointer<Float> in
            let buffer = UnsafeMutableBufferPointer<Float>.allocate(capacity: model.count)
            _ = buffer.initialize(from: model)
            return buffer
        }
        defer { buffers.forEach { $0.deallocate() } }
        var average = ConsensusDistance(models: buffers.map { UnsafeBufferPointer($0) }).average
        let evaluator = Evaluator(network: network, dataset: test)
        let averaged = average.withUnsafeBufferPointer { evaluator.evaluate($0) }
        RunningStatisticsEstimator.recompute(&average, network: network, dataset: statisticsSet, groupSize: 4)
        let recomputed = average.withUnsafeBufferPointer { evaluator.evaluate($0) }
        let last = try XCTUnwrap(result.coordinator.machine.lastRecord)
        XCTAssertEqual(last.testLoss, recomputed.loss)
        XCTAssertNotEqual(last.testLoss, averaged.loss)
        // The report says which statistics were used, for training and for evaluation.
        let description = try XCTUnwrap(configuration.batchNormDescription)
        XCTAssertTrue(description.contains("training: batch statistics of ghost batches of 4 (of 8)"), description)
        XCTAssertTrue(
            description.contains("evaluation: running statistics (x̄: recomputed for x̄ on 64 training examples"),
            description)
        XCTAssertNil(smallConfiguration().batchNormDescription)
    }

    /// "Train longer": √ scaling and regime adaptation against a reference total batch.
    func testLargeBatchRegime_ScalesRateRoundsAndSchedule() throws {
        var configuration = smallConfiguration(workers: 4, rounds: 10, batchSize: 32)
        configuration.optimizer.schedule = .warmup(steps: 5, then: .step(base: 0.1, every: 4, factor: 0.5))
        let adapted = try LargeBatchSettings.adapting(
            configuration, referenceBatchSize: 8, learningRateScaling: .sqrt, adaptRegime: true)
        // B_L = 4·32 = 128, B_S = 8: ratio 16, rate × 4, steps × 16.
        XCTAssertEqual(adapted.rounds, 160)
        XCTAssertEqual(adapted.optimizer.schedule, .warmup(steps: 80, then: .step(base: 0.4, every: 64, factor: 0.5)))
        XCTAssertEqual(adapted.largeBatch?.batchRatio, 16)
        XCTAssertEqual(adapted.largeBatch?.baseRounds, 10)
        XCTAssertEqual(adapted.largeBatch?.baseLearningRate, 0.1)
        let linear = try LargeBatchSettings.adapting(
            configuration, referenceBatchSize: 8, learningRateScaling: .linear, adaptRegime: false)
        XCTAssertEqual(linear.rounds, 10)
        XCTAssertEqual(linear.optimizer.schedule.baseRate, 1.6, accuracy: 1e-12)
        // A non-integer ratio rounds the step multiplier up, as the paper's code does.
        let uneven = try LargeBatchSettings.adapting(
            configuration, referenceBatchSize: 48, learningRateScaling: .none, adaptRegime: true)
        XCTAssertEqual(uneven.rounds, 30)
        XCTAssertThrowsError(
            try LargeBatchSettings.adapting(
                configuration, referenceBatchSize: 0, learningRateScaling: .none, adaptRegime: true))
        XCTAssertTrue(adapted.largeBatchDescription!.contains("160 rounds"))
    }

    func testGradientClipping_BoundsTheGlobalNorm() {
        var updates: [Float] = [3, 4, 0]
        var state: Void = ()
        ClipByGlobalNorm(maxNorm: 1).update(&updates, state: &state, parameters: [], step: 0)
        XCTAssertEqual(updates[0], 0.6, accuracy: 1e-7)
        XCTAssertEqual(updates[1], 0.8, accuracy: 1e-7)
        var small: [Float] = [0.3, 0.4]
        ClipByGlobalNorm(maxNorm: 1).update(&small, state: &state, parameters: [], step: 0)
        XCTAssertEqual(small, [0.3, 0.4])
    }

    func testBadBatchNormConfigurations_NameTheFlag() {
        func error(_ change: (inout RunConfiguration) -> Void) -> String {
            validationMessage(batchNormConfiguration(policy: .averaged).with(change))
        }
        XCTAssertTrue(error { $0.batchNorm.virtualBatchSize = 3 }.hasPrefix("--virtual-batch-size: must divide"))
        XCTAssertTrue(error { $0.model.batchNorm = false }.hasPrefix("--virtual-batch-size: the model"))
        XCTAssertTrue(error { $0.batchNorm.momentum = 0 }.hasPrefix("--bn-momentum"))
        XCTAssertTrue(error { $0.optimizer.gradientClipNorm = -1 }.hasPrefix("--clip-norm"))
        XCTAssertTrue(
            error {
                $0.federated = FederatedSettings(clientFraction: 1, proximalMu: 0)
                $0.batchNorm.policy = .local
            }.hasPrefix("--bn-policy"))
        XCTAssertEqual(error { _ in }, "no error")
    }
}

final class ConfigurationCompatibilityTests: XCTestCase {
    /// A config.json written before the later fields existed (batch norm, personalization, the
    /// large-batch regime, local epochs, the sharpness settings' batch-norm loss, …) still decodes,
    /// with each missing field at its default.
    func testOlderConfigurations_DecodeWithDefaults() throws {
        let configuration = smallConfiguration()
        var object = try XCTUnwrap(
            JSONSerialization.jsonObject(with: try JSONEncoder().encode(configuration)) as? [String: Any])
        for key in [
            "batchNorm", "personalization", "largeBatch", "localEpochs", "faults", "personalLayers", "clientTestSize",
            "federated", "failurePolicy", "failureTimeoutSeconds", "heartbeatIntervalSeconds", "maxRoundsAhead",
            "workerEvaluationSize",
        ] {
            object.removeValue(forKey: key)
        }
        var sharpness = try XCTUnwrap(object["sharpness"] as? [String: Any])
        sharpness.removeValue(forKey: "batch_norm_loss")
        object["sharpness"] = sharpness
        var model = try XCTUnwrap(object["model"] as? [String: Any])
        for key in ["kind", "batchNorm", "imageShape", "convolutionChannels"] { model.removeValue(forKey: key) }
        object["model"] = model
        let old = try JSONSerialization.data(withJSONObject: object)
        let decoded = try JSONDecoder().decode(RunConfiguration.self, from: old)
        XCTAssertEqual(decoded, configuration)
        // A missing field without a default is still an error that names it.
        object.removeValue(forKey: "rounds")
        XCTAssertThrowsError(
            try JSONDecoder().decode(RunConfiguration.self, from: try JSONSerialization.data(withJSONObject: object))
        ) { XCTAssertTrue("\($0)".contains("rounds"), "\($0)") }
    }
}
