import Algorithms
import Datasets
import LearningCore
import Optimizers
import Runtime
import Topologies
import Transport
import Wire
import XCTest
import _TestSupport

/// `base` (4 workers, federated on the solo graph, its personalization algorithm set) as the
/// algorithm runs: with the server or over a ring; local-only always alone (solo, no server);
/// FedPer's and FedRep's head, FedBN's batch-norm layers (local statistics, x̄ recomputed).
func personalized(_ base: RunConfiguration, federated: Bool) throws -> RunConfiguration {
    var configuration = base
    if !federated {
        configuration.federated = nil
        configuration.topology = .fixed(try .ring(nodeCount: 4))
    }
    switch configuration.personalization.algorithm {
    case .localOnly:
        configuration.federated = nil
        configuration.topology = .fixed(try .generated(.solo, nodeCount: 4))
    case .fedPer, .fedRep:
        configuration.personalLayers = ["layers.2"]
    case .fedBN:
        configuration.model.batchNorm = true
        configuration.personalLayers = ["layers.1"]
        configuration.batchNorm.policy = .local
        configuration.batchNorm.averageModelStatistics = .recomputed
    default:
        break
    }
    return configuration
}

/// The personalization algorithms: the additive objective against finite differences, the
/// curriculum that reaches the loss, shared models that equal FedAvg when the personal side does
/// not touch them, private parts that never travel, and the configuration errors.
final class PersonalizationAlgorithmTests: XCTestCase {
    private func federatedConfiguration(_ algorithm: PersonalizationSettings.Algorithm) -> RunConfiguration {
        var configuration = smallConfiguration(workers: 4, rounds: 6, localSteps: 2, evalEvery: 3)
        configuration.federated = FederatedSettings(clientFraction: 1, proximalMu: 0)
        configuration.topology = .fixed(try! .generated(.solo, nodeCount: 4))
        configuration.partition = .dirichlet(alpha: 0.3)
        configuration.clientTestSize = 30
        configuration.personalization = PersonalizationSettings(
            algorithm: algorithm, fineTuneSteps: 3, dittoLambda: 0.5, apflAlpha: 0.3, additiveLambda: 0.2,
            additiveMu: 0.01, curriculumRounds: 4)
        return configuration
    }

    private func run(_ configuration: RunConfiguration, hub: InMemoryHub? = nil) throws -> (
        CoordinatorShell, [WorkerShell]
    ) {
        try configuration.validate()
        let test = try DataLoader.loadTestSet(configuration.data)
        let result = Simulation.run(
            configuration: configuration, runID: 9, testSet: test, report: nil, data: nil, progress: nil,
            log: { _ in }, hub: hub)
        XCTAssertEqual(result.coordinator.outcome, .completed, "\(configuration.personalization.algorithm)")
        return (result.coordinator, result.workers.sorted { $0.machine.rank! < $1.machine.rank! })
    }

    /// L(g, l) = CE(g + l) − λ·mean((l − g)²) + μ·mean(|g|): the analytic gradients with respect
    /// to both parts against central differences of the whole objective (h = 1e-2, Float32 network
    /// with Float64 sums: the band of GradientTests, 2e-2 relative with a 2e-4 floor). Coordinates
    /// with |g| < h (the L1 kink) are skipped.
    func testAdditiveObjective_GradientMatchesFiniteDifferences() {
        let network = Network(spec: ModelSpec(widths: [6, 8, 3], activation: .tanh))
        var generator = SplitMix64(seed: 4)
        let global = network.initialParameters(seed: 1)
        let local = global.map { _ in Float(generator.nextStandardNormal() * 0.2) }
        let inputs = (0..<(5 * 6)).map { _ in Float(generator.nextStandardNormal()) }
        let labels: [Int32] = [0, 1, 2, 1, 0]
        let workspace = NetworkWorkspace(network: network, capacity: 5)
        let objective = AdditiveObjective(additive: network.layout.slices.map(\.range))
        let (lambda, mu) = (0.7, 0.3)
        func value(_ g: [Float], _ l: [Float]) -> Double {
            let crossEntropy = workspace.lossAndGradient(
                parameters: objective.combined(global: g, local: l), inputs: inputs, labels: labels
            ).loss
            return objective.value(crossEntropy: crossEntropy, global: g, local: l, lambda: lambda, mu: mu)
        }
        let ce = workspace.lossAndGradient(
            parameters: objective.combined(global: global, local: local), inputs: inputs, labels: labels)
        let (globalGradient, localGradient, separation, sparsity) = objective.gradients(
            crossEntropyGradient: ce.gradient, global: global, local: local, lambda: lambda, mu: mu)
        XCTAssertGreaterThan(separation, 0)
        XCTAssertGreaterThan(sparsity, 0)
        let h: Float = 1e-2
        var checked = 0
        for index in stride(from: 0, to: global.count, by: 3) where abs(global[index]) > 2 * h {
            for part in 0..<2 {
                var (gPlus, lPlus, gMinus, lMinus) = (global, local, global, local)
                if part == 0 {
                    gPlus[index] += h
                    gMinus[index] -= h
                } else {
                    lPlus[index] += h
                    lMinus[index] -= h
                }
                let numeric = (value(gPlus, lPlus) - value(gMinus, lMinus)) / Double(2 * h)
                let analytic = Double(part == 0 ? globalGradient[index] : localGradient[index])
                XCTAssertTrue(
                    isClose(analytic, numeric, relative: 2e-2, absolute: 2e-4),
                    "\(part == 0 ? "global" : "local") \(index): \(analytic) vs \(numeric)")
                checked += 1
            }
        }
        XCTAssertGreaterThan(checked, 20)
        // Each regularizer alone moves the gradients as its formula says.
        let noRegularizer = objective.gradients(
            crossEntropyGradient: ce.gradient, global: global, local: local, lambda: 0, mu: 0)
        XCTAssertEqual(noRegularizer.global, ce.gradient)
        XCTAssertEqual(noRegularizer.local, ce.gradient)
    }

    /// With `--additive-layers`, only the named slices get a local part; the others stay zero.
    func testAdditiveLayers_LimitTheLocalPart() throws {
        var configuration = federatedConfiguration(.additive)
        configuration.personalization.additiveLayers = ["layers.2"]
        let (_, workers) = try run(configuration)
        let layout = Network(spec: configuration.model).layout
        let local = try XCTUnwrap(workers[0].machine.personalPart)
        let head = layout["layers.2.weight"]!.range.lowerBound..<layout["layers.2.bias"]!.range.upperBound
        XCTAssertTrue(local[0..<head.lowerBound].allSatisfy { $0 == 0 }, "no local part outside layers.2")
        XCTAssertFalse(local[head].allSatisfy { $0 == 0 }, "a local part on layers.2")
    }

    /// The curriculum values that reached each round's loss are recorded: λ_t = tanh(t/T)·λ,
    /// μ_t = tanh(t/T)·μ, or the fixed values.
    func testCurriculum_IsRecordedPerRoundAndReachesTheLoss() throws {
        for curriculum in PersonalizationSettings.Curriculum.allCases {
            var configuration = federatedConfiguration(.additive)
            configuration.personalization.curriculum = curriculum
            let (coordinator, _) = try run(configuration)
            for record in coordinator.records {
                let factor = curriculum == .tanh ? tanh(Double(record.round) / 4) : 1
                XCTAssertEqual(record.additiveLambda!, 0.2 * factor, accuracy: 1e-12)
                XCTAssertEqual(record.additiveMu!, 0.01 * factor, accuracy: 1e-12)
            }
        }
        // The values change the training: a fixed curriculum gives other numbers than tanh.
        var fixed = federatedConfiguration(.additive)
        fixed.personalization.curriculum = .fixed
        let a = try run(fixed).1[0].machine.parameters
        let b = try run(federatedConfiguration(.additive)).1[0].machine.parameters
        XCTAssertNotEqual(a, b)
    }

    /// The L1 term's proximal step zeroes small coordinates exactly and shrinks the others by the
    /// threshold; a run with a large μ makes part of the shared model exactly zero and records it.
    func testSparsity_SoftThresholdingGivesExactZeros() throws {
        let objective = AdditiveObjective(additive: [0..<4])
        var global: [Float] = [0.5, -0.05, 0.1, -2, 7]
        objective.softThreshold(&global, by: 0.1)
        XCTAssertEqual(global, [0.4, 0, 0, -1.9, 7], "the fifth coordinate is not additive")
        XCTAssertEqual(objective.zeroFraction(global), 0.5)
        var sparse = federatedConfiguration(.additive)
        sparse.personalization.additiveMu = 0.05
        sparse.personalization.curriculum = .fixed
        let (coordinator, workers) = try run(sparse)
        let recorded = try XCTUnwrap(coordinator.records.last?.additiveGlobalZeroFraction)
        XCTAssertGreaterThan(recorded, 0.05)
        let zeros = workers[0].machine.parameters.filter { $0 == 0 }.count
        XCTAssertGreaterThan(zeros, 0, "the shared model the server broadcast is sparse")
        let (dense, _) = try run(federatedConfiguration(.additive).with { $0.personalization.additiveMu = 0 })
        // Without μ only coordinates that never get a gradient (biases of dead ReLU units, which
        // start at zero) are zero.
        XCTAssertLessThan(try XCTUnwrap(dense.records.last?.additiveGlobalZeroFraction), recorded / 2)
    }

    /// With IID data and no personal part in the shared training, the shared model of Ditto,
    /// APFL and fine-tuning is FedAvg's, bit for bit (their personal training uses its own batch
    /// stream and never writes the shared model); their deployed models differ from it.
    func testSharedModel_OfDittoAPFLAndFineTune_IsFedAvgs() throws {
        var plain = federatedConfiguration(.none)
        plain.partition = .iid
        let (_, reference) = try run(plain)
        for algorithm in [PersonalizationSettings.Algorithm.ditto, .apfl, .fineTune] {
            var configuration = federatedConfiguration(algorithm)
            configuration.partition = .iid
            let (coordinator, workers) = try run(configuration)
            for (worker, expected) in zip(workers, reference) {
                XCTAssertEqual(worker.machine.parameters, expected.machine.parameters, "\(algorithm)")
            }
            XCTAssertNotEqual(
                coordinator.records.last?.clientAccuracy, nil, "\(algorithm): every client evaluated itself")
        }
    }

    /// Ditto's v and the additive local part never leave the worker: every message a worker sends
    /// carries at most the shared model's size, and no payload is (close to) the private vector
    /// or the deployed model; the server's model is the average of the shared parts.
    func testPrivateParts_NeverTravel() throws {
        for algorithm in [PersonalizationSettings.Algorithm.ditto, .additive] {
            let configuration = federatedConfiguration(algorithm)
            let hub = InMemoryHub(recordingSends: true)
            let (_, workers) = try run(configuration, hub: hub)
            let network = Network(spec: configuration.model)
            for worker in workers {
                let rankSuffix = "worker-\(worker.machine.rank!)#"
                let sent = hub.sent.filter { $0.from.contains(rankSuffix) }.compactMap(\.envelope.payload)
                XCTAssertFalse(sent.isEmpty)
                let personal = try XCTUnwrap(worker.machine.personalPart)
                XCTAssertFalse(personal.allSatisfy { $0 == 0 }, "\(algorithm): the private part trained")
                for payload in sent {
                    XCTAssertEqual(payload.count, network.parameterCount)
                    XCTAssertGreaterThan(relativeDistance(payload.array, personal), 1e-3, "\(algorithm)")
                }
            }
        }
    }

    /// FedRep's phases: frozen coordinates keep their exact values through steps with momentum
    /// and weight decay, while the others move.
    func testFrozenCoordinates_AreNotTrained() throws {
        let configuration = smallConfiguration(workers: 2, momentum: 0.9)
        let network = Network(spec: configuration.model)
        var settings = configuration.optimizer
        settings.weightDecay = 0.1
        var trainer = LocalTrainer(
            network: network, shard: try shards(configuration)[0], batchSize: 8, localSteps: 3, optimizer: settings,
            seed: 1, rank: 0)
        let head = network.layout["layers.2.weight"]!.range
        let start = network.initialParameters(seed: 1)
        var trained = start
        _ = trainer.train(&trained, round: 0, frozen: [head])
        XCTAssertEqual(Array(trained[head]), Array(start[head]))
        XCTAssertNotEqual(Array(trained[0..<head.lowerBound]), Array(start[0..<head.lowerBound]))
    }

    /// FedAvg with one local step, every client every round, equal client sizes and each client's
    /// momentum kept from round to round is C-SGD: gossip on the complete graph (exact averaging).
    /// (With `--client-momentum reset` every round's step would start without a trace, which a
    /// C-SGD worker never does.) Tolerance 1e-5 relative: the server's size-weighted sum and the
    /// gossip mix add the same terms in different orders.
    func testFedAvgOneStepFullParticipation_EqualsCSGD() throws {
        var federated = smallConfiguration(workers: 4, rounds: 8, localSteps: 1, momentum: 0.9)
        federated.federated = FederatedSettings(clientFraction: 1, proximalMu: 0, clientMomentum: .keep)
        federated.topology = .fixed(try .generated(.solo, nodeCount: 4))
        var centralized = smallConfiguration(workers: 4, rounds: 8, localSteps: 1, momentum: 0.9)
        centralized.topology = .fixed(try .generated(.complete, nodeCount: 4))
        let shardSizes = try shards(federated).map(\.count)
        XCTAssertEqual(Set(shardSizes).count, 1, "equal client sizes")
        let (_, server) = try run(federated)
        let (_, gossip) = try run(centralized)
        for (a, b) in zip(server, gossip) {
            XCTAssertLessThan(relativeDistance(a.machine.parameters, b.machine.parameters), 1e-5)
        }
    }

    /// E local epochs: each client runs ⌈E·n_k/B⌉ steps, so unequal clients take unequal steps;
    /// the run equals a sequential server doing exactly that (1e-5 relative, as in SimulationTests).
    func testLocalEpochs_GiveEachClientItsOwnStepCount() throws {
        var configuration = smallConfiguration(workers: 4, rounds: 4)
        configuration.federated = FederatedSettings(clientFraction: 1, proximalMu: 0)
        configuration.topology = .fixed(try .generated(.solo, nodeCount: 4))
        configuration.partition = .logNormal(sigma: 1)
        configuration.localEpochs = 0.25
        let (_, workers) = try run(configuration)
        let network = Network(spec: configuration.model)
        let clients = try shards(configuration)
        let steps = clients.map { configuration.localSteps(forExamples: $0.count) }
        XCTAssertGreaterThan(Set(steps).count, 1, "unequal clients take unequal steps: \(steps)")
        var trainers = clients.enumerated().map { rank, shard in
            LocalTrainer(
                network: network, shard: shard, batchSize: configuration.batchSize, localSteps: steps[rank],
                optimizer: configuration.optimizer, seed: configuration.seed, rank: rank)
        }
        let total = Double(clients.reduce(0) { $0 + $1.count })
        var global = network.initialParameters(seed: configuration.seed)
        for round in 0..<configuration.rounds {
            var next = [Float](repeating: 0, count: global.count)
            for client in 0..<4 {
                var x = global
                _ = trainers[client].train(&x, round: round)
                next.addScaled(x, by: Float(Double(clients[client].count) / total))
            }
            global = next
        }
        for worker in workers { XCTAssertLessThan(relativeDistance(worker.machine.parameters, global), 1e-5) }
    }

    /// Every algorithm runs with the server and over a ring, and what stays on the client is
    /// where the algorithm says: FedPer's and FedRep's heads and FedBN's batch-norm layers differ
    /// between clients while (with the server) the rest is the global model; APFL learns α.
    func testEveryAlgorithm_RunsWithAServerAndOverARing_PersonalPartsStayPersonal() throws {
        for algorithm in PersonalizationSettings.Algorithm.allCases {
            for federated in [true, false] {
                let configuration = try personalized(federatedConfiguration(algorithm), federated: federated)
                let (coordinator, workers) = try run(configuration)
                XCTAssertNotNil(coordinator.records.last?.clientAccuracyMean, "\(algorithm)")
                let layout = Network(spec: configuration.model).layout
                let personal = configuration.localRanges(in: layout)
                let models = workers.map(\.machine.parameters)
                if algorithm == .apfl {
                    XCTAssertNotEqual(workers[0].machine.apflAlpha, 0.3, "APFL learns its mixture weight")
                }
                if !personal.isEmpty {
                    XCTAssertNotEqual(
                        Array(models[0][personal[0]]), Array(models[1][personal[0]]), "\(algorithm): personal differs")
                }
                if federated, configuration.federated != nil {
                    var shared = models.map { $0 }
                    for i in shared.indices { for range in personal { for j in range { shared[i][j] = 0 } } }
                    XCTAssertEqual(shared[0], shared[1], "\(algorithm): the shared part is the global model")
                }
            }
        }
    }

    /// In federated mode a client's bytes in round t are its upload of round t: one model (plus
    /// the header) when sampled, nothing otherwise.
    func testFederatedBytesPerClient_AreThatRoundsUpload() throws {
        var configuration = smallConfiguration(workers: 5, rounds: 6)
        configuration.federated = FederatedSettings(clientFraction: 0.4, proximalMu: 0)
        configuration.topology = .fixed(try .generated(.solo, nodeCount: 5))
        let (coordinator, _) = try run(configuration)
        let upload = MessageHeader.byteCount + 4 * Network(spec: configuration.model).parameterCount
        for record in coordinator.records {
            let sampled = configuration.federated!.aggregator.sampledClients(
                round: record.round - 1, workers: 5, seed: configuration.seed)
            XCTAssertEqual(
                record.bytesSentByWorker, (0..<5).map { sampled.contains($0) ? upload : 0 }, "round \(record.round)")
        }
    }

    /// FedRep's head phase has an optimizer state of its own: with one step per phase, heavy-ball
    /// momentum starts from zero in each phase, so the result equals plain SGD's exactly; a shared
    /// momentum trace would carry the head phase's body gradient into the body step.
    func testFedRepPhases_HaveTheirOwnOptimizerState() throws {
        let configuration = smallConfiguration(workers: 2)
        let network = Network(spec: configuration.model)
        let head = [network.layout["layers.2.weight"]!.range, network.layout["layers.2.bias"]!.range]
        let body = [network.layout["layers.0.weight"]!.range, network.layout["layers.0.bias"]!.range]
        func run(momentum: Double) throws -> [Float] {
            var settings = configuration.optimizer
            settings.momentumKind = momentum == 0 ? .none : .heavyBall
            settings.momentum = momentum
            var trainer = LocalTrainer(
                network: network, shard: try shards(configuration)[0], batchSize: 8, localSteps: 1,
                optimizer: settings, seed: 1, rank: 0)
            var parameters = network.initialParameters(seed: 1)
            _ = trainer.train(&parameters, round: 0, steps: 1, frozen: body, phase: 1)
            _ = trainer.train(&parameters, round: 0, frozen: head)
            return parameters
        }
        XCTAssertEqual(try run(momentum: 0.9), try run(momentum: 0))
    }

    func testBadPersonalizationConfigurations_NameTheFlag() {
        func error(
            _ algorithm: PersonalizationSettings.Algorithm, _ change: (inout RunConfiguration) -> Void = { _ in }
        )
            -> String
        {
            validationMessage(federatedConfiguration(algorithm).with(change))
        }
        XCTAssertTrue(error(.ditto) { $0.personalization.dittoLambda = -1 }.hasPrefix("--ditto-lambda: must be ≥ 0"))
        XCTAssertTrue(error(.additive) { $0.personalization.additiveLambda = -0.1 }.hasPrefix("--additive-lambda"))
        XCTAssertTrue(error(.apfl) { $0.personalization.apflAlpha = 1.5 }.hasPrefix("--apfl-alpha"))
        XCTAssertTrue(error(.fedBN).contains("fedbn needs a model with batch norm"))
        XCTAssertTrue(error(.fedPer).contains("needs a personal head"))
        XCTAssertTrue(
            error(.localOnly) {
                $0.federated = nil
                $0.topology = .fixed(try! Topology.ring(nodeCount: 4))
            }.contains("local-only means no communication"))
        XCTAssertTrue(error(.additive) { $0.model.batchNorm = true }.contains("without batch norm"))
        XCTAssertTrue(
            error(.additive) { $0.personalization.additiveLayers = ["layers.7"] }.hasPrefix(
                "--additive-layers: 'layers.7' names no parameter slice"))
        XCTAssertEqual(error(.additive), "no error")
    }
}
