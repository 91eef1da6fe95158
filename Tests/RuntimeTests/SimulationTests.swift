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

/// Small synthetic workloads so every case runs in well under a second in debug builds.
func smallConfiguration(
    workers: Int = 8, topology: Topology? = nil, algorithm: GossipAlgorithm = .adaptThenCombine, rounds: Int = 20,
    localSteps: Int = 1, momentum: Double = 0, batchSize: Int = 8, metricsEvery: Int = 1, evalEvery: Int = 5,
    seed: UInt64 = 3
) -> RunConfiguration {
    RunConfiguration(
        runName: "test", seed: seed, rounds: rounds, workers: workers, model: ModelSpec(widths: [20, 12, 10]),
        batchSize: batchSize, localSteps: localSteps, algorithm: algorithm,
        optimizer: OptimizerSettings(
            schedule: .constant(0.1), momentumKind: momentum == 0 ? .none : .heavyBall, momentum: momentum),
        data: .synthetic(seed: 2, trainCount: 400, testCount: 100, featureCount: 20), partition: .iid,
        topology: .fixed(topology ?? (try! Topology.ring(nodeCount: workers))), metricsEvery: metricsEvery,
        evalEvery: evalEvery,
        evaluateWorkers: true, peerTimeoutSeconds: 10)
}

func simulate(_ configuration: RunConfiguration) throws -> (CoordinatorShell, [WorkerShell]) {
    let test = try DataLoader.loadTestSet(configuration.data)
    let result = Simulation.run(
        configuration: configuration, runID: 42, testSet: test, report: nil, data: nil, progress: nil, log: { _ in })
    XCTAssertEqual(result.coordinator.outcome, .completed)
    return result
}

/// What `validate()` says about a configuration: its error message, or "no error".
func validationMessage(_ configuration: RunConfiguration) -> String {
    do {
        try configuration.validate()
        return "no error"
    } catch {
        return "\(error)"
    }
}

extension RunConfiguration {
    /// A copy with `change` applied.
    func with(_ change: (inout RunConfiguration) -> Void) -> RunConfiguration {
        var copy = self
        change(&copy)
        return copy
    }
}

func shards(_ configuration: RunConfiguration) throws -> [Dataset] {
    try (0..<configuration.workers).map {
        try DataLoader.loadShard(
            configuration.data, partition: configuration.partition, workers: configuration.workers,
            seed: configuration.seed, rank: $0)
    }
}

final class SimulationTests: XCTestCase {
    /// Gossip over the in-memory transport equals the dense X ← W·X reference with the same local
    /// updates. Tolerance 1e-5 relative (norm-wise): the two sum the same terms in different
    /// orders, ≈1e-7 per round in Float32 over 20 rounds; a wrong weight, a missing or stale
    /// neighbour is off by ≥1e-2.
    func testSimulation_MatchesDenseReference_ATCAndCTA() throws {
        for algorithm in [GossipAlgorithm.adaptThenCombine, .combineThenAdapt] {
            for topology in [
                try Topology.ring(nodeCount: 8),
                try TopologyFile.parse("8\n0 1\n0 2\n0 3\n0 4\n0 5\n0 6\n0 7\n", name: "star"),
            ] {
                let configuration = smallConfiguration(
                    topology: topology, algorithm: algorithm, localSteps: 2, momentum: 0.9)
                let (_, workers) = try simulate(configuration)
                let reference = denseReferenceDSGD(
                    network: Network(spec: configuration.model), shards: try shards(configuration), topology: topology,
                    algorithm: algorithm, batchSize: configuration.batchSize, localSteps: configuration.localSteps,
                    optimizer: configuration.optimizer, seed: configuration.seed, rounds: configuration.rounds)
                for worker in workers {
                    let rank = worker.machine.rank!
                    let distance = relativeDistance(worker.machine.parameters, reference[rank])
                    XCTAssertLessThan(distance, 1e-5, "\(algorithm) on \(topology.name), worker \(rank)")
                }
                // The models must have moved apart and back: a reference that ignores gossip would differ.
                XCTAssertGreaterThan(directConsensusDistanceSquared(reference), 0)
            }
        }
    }

    /// On the complete graph with uniform 1/n weights, one round of ATC with one plain SGD step is
    /// SGD with the n per-worker batches concatenated (the mean of the n batch-mean gradients is
    /// the mean over n·b samples). Tolerance 1e-5 relative, as above.
    func testCompleteGraph_EqualsLargeBatchSGD() throws {
        let workers = 4
        let configuration = smallConfiguration(
            workers: workers, topology: try .complete(nodeCount: workers), rounds: 15, batchSize: 6)
        let (_, shells) = try simulate(configuration)
        let network = Network(spec: configuration.model)
        var samplers = try shards(configuration).enumerated().map {
            ShardSampler(shard: $1, seed: configuration.seed, rank: $0)
        }
        var x = network.initialParameters(seed: configuration.seed)
        let batch = configuration.batchSize
        let workspace = NetworkWorkspace(network: network, capacity: workers * batch)
        var gradient = [Float](repeating: 0, count: network.parameterCount)
        for _ in 0..<configuration.rounds {
            for rank in 0..<workers {
                let indices = samplers[rank].nextIndices(batchSize: batch)
                samplers[rank].shard.copyRows(
                    indices, into: workspace.input + rank * batch * network.inputWidth,
                    labels: workspace.labels + rank * batch)
            }
            x.withUnsafeBufferPointer { p in
                gradient.withUnsafeMutableBufferPointer { g in
                    _ = workspace.lossAndGradient(
                        parameters: p.baseAddress!, gradient: g.baseAddress!, batchSize: workers * batch)
                }
            }
            x.addScaled(gradient, by: -0.1)
        }
        for shell in shells {
            XCTAssertLessThan(relativeDistance(shell.machine.parameters, x), 1e-5, "worker \(shell.machine.rank!)")
        }
    }

    /// The coordinator's Ξ² equals a plain Float64 computation from the workers' final models
    /// (relative 1e-9: both accumulate in Float64; only x̄ is rounded to Float32 in the coordinator,
    /// whose first-order effect on Ξ² cancels because Σᵢ(xᵢ − x̄) = 0).
    func testCoordinatorConsensusDistance_EqualsDirectComputation() throws {
        let configuration = smallConfiguration(rounds: 12, metricsEvery: 4)
        let (coordinator, workers) = try simulate(configuration)
        let models = workers.sorted { $0.machine.rank! < $1.machine.rank! }.map(\.machine.parameters)
        let direct = directConsensusDistanceSquared(models)
        let recorded = try XCTUnwrap(coordinator.records.last?.consensusDistanceSquared)
        XCTAssertGreaterThan(direct, 0)
        XCTAssertEqual(recorded, direct, accuracy: 1e-6 * direct)
        // Gathering only every 4th round: rounds in between carry no Ξ².
        XCTAssertEqual(
            coordinator.records.map { $0.consensusDistanceSquared != nil },
            (1...12).map { $0 % 4 == 0 || $0 % 5 == 0 || $0 == 12 })
        XCTAssertEqual(coordinator.records.map(\.round), Array(1...12))
    }

    func testSameSeed_SameNumbers_DifferentSeed_Different() throws {
        let a = try simulate(smallConfiguration(rounds: 6)).0.records
        let b = try simulate(smallConfiguration(rounds: 6)).0.records
        let c = try simulate(smallConfiguration(rounds: 6, seed: 4)).0.records
        func strip(_ records: [RoundRecord]) -> [RoundRecord] {
            records.map {
                var r = $0; r.elapsedSeconds = nil; return r
            }
        }
        XCTAssertEqual(strip(a), strip(b))
        XCTAssertNotEqual(strip(a).map(\.trainLoss), strip(c).map(\.trainLoss))
    }

    func testEvaluation_ReportsTestAccuracyOfAverageAndWorkers() throws {
        let (coordinator, _) = try simulate(smallConfiguration(rounds: 10, evalEvery: 5))
        let evaluated = coordinator.records.filter { $0.testAccuracy != nil }.map(\.round)
        XCTAssertEqual(evaluated, [5, 10])
        let last = try XCTUnwrap(coordinator.records.last)
        XCTAssertLessThanOrEqual(last.workerTestAccuracyMin!, last.workerTestAccuracyMax!)
        XCTAssertTrue((0...1).contains(last.testAccuracy!))
        XCTAssertEqual(coordinator.summary.status, "completed")
        XCTAssertEqual(coordinator.summary.finalTestAccuracy, last.testAccuracy)
    }

    func testSingleWorker_IsPlainLocalSGD() throws {
        let configuration = smallConfiguration(workers: 1, rounds: 5)
        let (_, workers) = try simulate(configuration)
        let reference = denseReferenceDSGD(
            network: Network(spec: configuration.model), shards: try shards(configuration),
            topology: configuration.topology,
            algorithm: .adaptThenCombine, batchSize: configuration.batchSize, localSteps: 1,
            optimizer: configuration.optimizer,
            seed: configuration.seed, rounds: 5)
        XCTAssertEqual(workers[0].machine.parameters, reference[0])
    }

    func testConfigurationValidation_NamesTheFlag() {
        var configuration = smallConfiguration()
        configuration.workers = 5
        XCTAssertThrowsError(try configuration.validate()) {
            XCTAssertTrue("\($0)".contains("--topology: ring has 8 nodes but 5 workers"))
        }
        configuration = smallConfiguration()
        configuration.batchSize = 0
        XCTAssertThrowsError(try configuration.validate()) { XCTAssertTrue("\($0)".hasPrefix("--batch")) }
    }
}

final class InterleavingTests: XCTestCase {
    /// Whatever order messages from different senders arrive in, and however far flow control
    /// lets workers run ahead, every worker ends with the same bits.
    func testNumbersDoNotDependOnMessageTiming() throws {
        for algorithm in GossipAlgorithm.allCases {
            var base = smallConfiguration(workers: 6, algorithm: algorithm, rounds: 12, metricsEvery: 3)
            let reference = try simulate(base).1.map(\.machine.parameters)
            for window in [1, 2, 5] {
                base.maxRoundsAhead = window
                for seed: UInt64 in [1, 2, 3] {
                    let test = try DataLoader.loadTestSet(base.data)
                    let (coordinator, workers) = Simulation.run(
                        configuration: base, runID: 42, testSet: test, report: nil, data: nil, progress: nil,
                        log: { _ in },
                        interleavingSeed: seed)
                    XCTAssertEqual(coordinator.outcome, .completed, "\(algorithm) window \(window) seed \(seed)")
                    XCTAssertTrue(
                        workers.map(\.machine.parameters) == reference,
                        "\(algorithm) window \(window) seed \(seed): models differ")
                    XCTAssertEqual(workers.map(\.outcome), Array(repeating: .completed, count: 6))
                }
            }
        }
    }
}

/// A worker writes a shared-memory slot again once the coordinator's acknowledgement says the
/// round of the model in it is recorded (`SharedPayloadPlan.slotCount`). Here every payload is
/// flagged when it is read after its maker released its round, and the machines check every
/// payload they read: for every algorithm, on a ring, on the complete graph's all-reduce, on
/// time-varying schedules and (push-sum) a directed graph, with the flow-control window from 1 to
/// 8 and deliveries in random orders, nothing is read after its release, the numbers are those of
/// the plain run, and the releases did follow the records.
final class PayloadReleaseTests: XCTestCase {
    func testNoModelIsReadAfterItsRoundIsReleased() throws {
        let directed = try Graph(
            nodeCount: 6, edges: (0..<6).map { ($0, ($0 + 1) % 6) } + [(0, 3), (4, 1)], directed: true)
        let schedules: [TopologySchedule] = [
            .fixed(try .ring(nodeCount: 6)), .fixed(try .complete(nodeCount: 6)), .onePeerExponential(nodeCount: 6),
            .randomMatching(nodeCount: 6, seed: 4),
            .fixed(try Topology(name: "directed", graph: directed, weights: .columnStochastic)),
        ]
        for algorithm in GossipAlgorithm.allCases {
            for schedule in schedules {
                if schedule.requiresPushSum && algorithm != .adaptThenCombine { continue }
                var base = smallConfiguration(workers: 6, algorithm: algorithm, rounds: 12, metricsEvery: 3)
                base.topology = schedule
                let reference = try simulate(base).1.map(\.machine.parameters)
                for window in [1, 3, 8] {
                    base.maxRoundsAhead = window
                    for seed: UInt64 in [1, 2] {
                        let label = "\(algorithm) on \(schedule.name), window \(window), seed \(seed)"
                        let (coordinator, workers) = Simulation.run(
                            configuration: base, runID: 42, testSet: try DataLoader.loadTestSet(base.data),
                            report: nil, data: nil, progress: nil, log: { _ in }, interleavingSeed: seed,
                            hub: InMemoryHub(reorderingSeed: seed, checkingReleases: true))
                        XCTAssertEqual(coordinator.outcome, .completed, label)
                        XCTAssertTrue(workers.map(\.machine.parameters) == reference, "\(label): models differ")
                        for worker in workers {
                            let released = (worker.transport as! InMemoryTransport).releasedThrough
                            XCTAssertEqual(released, worker.machine.recordedRounds, label)
                            XCTAssertGreaterThanOrEqual(released ?? 0, 12 - window, label)
                        }
                    }
                }
            }
        }
    }
}

final class ScheduleSimulationTests: XCTestCase {
    /// Time-varying schedules and push-sum against the dense reference that applies the same
    /// per-round matrices (relative 1e-5, as for static graphs; push-sum adds one division by wᵢ).
    func testSchedulesAndPushSum_MatchDenseReference() throws {
        let n = 8
        let directed = try Graph(
            nodeCount: n, edges: (0..<n).map { ($0, ($0 + 1) % n) } + [(0, 4), (0, 2), (3, 7), (5, 1)], directed: true)
        let pushSum = try Topology(name: "directed", graph: directed, weights: .columnStochastic)
        XCTAssertTrue(pushSum.requiresPushSum)
        let schedules: [TopologySchedule] = [
            .onePeerExponential(nodeCount: n), .randomMatching(nodeCount: n, seed: 4),
            .randomPermutation(base: try .ring(nodeCount: n), seed: 5),
            .randomRegular(nodeCount: n, degree: 3, seed: 6),
            .fixed(try .generated(.exponential, nodeCount: n)), .fixed(pushSum),
        ]
        for schedule in schedules {
            for algorithm in [GossipAlgorithm.adaptThenCombine, .combineThenAdapt] {
                var configuration = smallConfiguration(workers: n, algorithm: algorithm, rounds: 12, momentum: 0.5)
                configuration.topology = schedule
                let (_, workers) = try simulate(configuration)
                let reference = denseReferenceDSGD(
                    network: Network(spec: configuration.model), shards: try shards(configuration), topology: schedule,
                    algorithm: algorithm, batchSize: configuration.batchSize, localSteps: 1,
                    optimizer: configuration.optimizer,
                    seed: configuration.seed, rounds: configuration.rounds)
                for worker in workers {
                    let rank = worker.machine.rank!
                    XCTAssertLessThan(
                        relativeDistance(worker.machine.model, reference[rank]), 1e-5,
                        "\(schedule.name) \(algorithm) worker \(rank)")
                }
                if schedule.requiresPushSum {
                    let weights = workers.map(\.machine.pushSumWeight)
                    XCTAssertEqual(
                        weights.reduce(0, +), Double(n), accuracy: 1e-9, "push-sum conserves the total weight")
                    XCTAssertTrue(
                        weights.contains { abs($0 - 1) > 1e-3 }, "weights actually move on an irregular digraph")
                }
            }
        }
    }

    /// Push-sum reaches the true average on an irregular directed graph; plain averaging with
    /// row-stochastic (uniform) weights on the same graph drifts to a weighted average.
    func testPushSum_PreservesTheAverage() throws {
        let n = 6
        let graph = try Graph(
            nodeCount: n, edges: (0..<n).map { ($0, ($0 + 1) % n) } + [(0, 3), (0, 2)], directed: true)
        let pushSum = try Topology(name: "p", graph: graph, weights: .columnStochastic)
        var random = SplitMix64(seed: 1)
        let start = (0..<n).map { _ in [Float(random.nextStandardNormal())] }
        let mean = start.reduce(0.0) { $0 + Double($1[0]) } / Double(n)
        var x = start.map { Double($0[0]) }
        var w = [Double](repeating: 1, count: n)
        let a = pushSum.denseMixingMatrix
        for _ in 0..<300 {
            x = (0..<n).map { i in (0..<n).reduce(0.0) { $0 + a[i * n + $1] * x[$1] } }
            w = (0..<n).map { i in (0..<n).reduce(0.0) { $0 + a[i * n + $1] * w[$1] } }
        }
        for i in 0..<n { XCTAssertEqual(x[i] / w[i], mean, accuracy: 1e-9) }
    }
}

final class FaultInjectionTests: XCTestCase {
    /// A dropped link changes the mixing exactly as the dense reference with that link absent in
    /// those rounds. (That timing faults never change numbers needs a clock: real processes, in
    /// ClusterTests.testTimingFaults_BetweenProcesses_ChangeTimingNotNumbers.)
    func testDroppedLinks_MatchTheReference() throws {
        let base = smallConfiguration(workers: 5, rounds: 10)
        let reference = try simulate(base).1.map(\.machine.parameters)
        var dropped = base
        dropped.faults = [.dropLink(u: 0, v: 1, rounds: 3...6)]
        dropped.topology = dropped.topology.dropping(dropped.faults)
        XCTAssertTrue(dropped.topology.topology(atRound: 3).inNeighbors(of: 0).contains(4))
        XCTAssertFalse(dropped.topology.topology(atRound: 3).inNeighbors(of: 0).contains(1))
        XCTAssertTrue(dropped.topology.topology(atRound: 7).inNeighbors(of: 0).contains(1))
        let (_, workers) = try simulate(dropped)
        let expected = denseReferenceDSGD(
            network: Network(spec: dropped.model), shards: try shards(dropped), topology: dropped.topology,
            algorithm: dropped.algorithm, batchSize: dropped.batchSize, localSteps: 1, optimizer: dropped.optimizer,
            seed: dropped.seed, rounds: dropped.rounds)
        for worker in workers {
            XCTAssertLessThan(relativeDistance(worker.machine.model, expected[worker.machine.rank!]), 1e-5)
        }
        XCTAssertFalse(workers.map(\.machine.parameters) == reference)
    }

    func testFaultFlags_ParseAndReject() throws {
        XCTAssertEqual(
            try Fault.parse("2:0.5", kind: "straggler", workers: 4, rounds: 10),
            .straggler(worker: 2, seconds: 0.5, rounds: 1...10))
        XCTAssertEqual(
            try Fault.parse("0:3:5-9", kind: "drop-link", workers: 4, rounds: 10), .dropLink(u: 0, v: 3, rounds: 5...9))
        XCTAssertEqual(try Fault.parse("1:7", kind: "kill-worker", workers: 4, rounds: 10), .kill(worker: 1, round: 7))
        XCTAssertThrowsError(try Fault.parse("9:1", kind: "kill-worker", workers: 4, rounds: 10)) {
            XCTAssertTrue("\($0)".contains("--kill-worker: '9:1': '9' is not a worker"), "\($0)")
        }
        XCTAssertThrowsError(try Fault.parse("0:1:9-3", kind: "drop-link", workers: 4, rounds: 10)) {
            XCTAssertTrue("\($0)".contains("round range"), "\($0)")
        }
    }
}

final class PersonalizationTests: XCTestCase {
    /// Personal layers over gossip: shared slices follow the masked dense reference, personal
    /// slices are never mixed (they differ between workers) and never sent.
    func testPersonalHead_IsNeverMixed_AndMatchesTheMaskedReference() throws {
        for algorithm in [GossipAlgorithm.adaptThenCombine, .combineThenAdapt] {
            var configuration = smallConfiguration(workers: 4, algorithm: algorithm, rounds: 10)
            configuration.partition = .pathological(classesPerWorker: 2)
            configuration.personalLayers = ["layers.2"]
            try configuration.validate()
            let network = Network(spec: configuration.model)
            let personal = configuration.personalRanges(in: network.layout)
            XCTAssertEqual(
                personal, [network.layout["layers.2.weight"]!.range, network.layout["layers.2.bias"]!.range])
            let (_, workers) = try simulate(configuration)
            let reference = denseReferenceDSGD(
                network: network, shards: try shards(configuration), topology: configuration.topology,
                algorithm: algorithm,
                batchSize: configuration.batchSize, localSteps: 1, optimizer: configuration.optimizer,
                seed: configuration.seed,
                rounds: configuration.rounds, personal: personal)
            for worker in workers {
                XCTAssertLessThan(
                    relativeDistance(worker.machine.parameters, reference[worker.machine.rank!]), 1e-5, "\(algorithm)")
            }
            let heads = workers.map { Array($0.machine.parameters[personal[0]]) }
            XCTAssertNotEqual(heads[0], heads[1], "personal heads stay apart")
        }
        var bad = smallConfiguration(workers: 4)
        bad.personalLayers = ["layers.9"]
        XCTAssertThrowsError(try bad.validate()) {
            XCTAssertTrue("\($0)".contains("--personal-layers: 'layers.9' names no parameter slice"))
        }
    }

    /// Per-client accuracy is each worker's own (personalized) model on its own test split: the
    /// coordinator's figures equal a direct evaluation of the final models.
    func testClientEvaluation_UsesEachWorkersOwnModelAndSplit() throws {
        var configuration = smallConfiguration(workers: 4, rounds: 6, evalEvery: 3)
        configuration.partition = .pathological(classesPerWorker: 2)
        configuration.personalLayers = ["layers.2"]
        configuration.clientTestSize = 40
        let test = try DataLoader.loadTestSet(configuration.data)
        let splits = try (0..<configuration.workers).map {
            try DataLoader.loadClientTestSplit(configuration, rank: $0, testSet: test)
        }
        let result = Simulation.run(
            configuration: configuration, runID: 1, testSet: test, report: nil, data: nil, progress: nil, log: { _ in })
        XCTAssertEqual(result.coordinator.outcome, .completed)
        let last = try XCTUnwrap(result.coordinator.records.last)
        let network = Network(spec: configuration.model)
        let direct = result.workers.sorted { $0.machine.rank! < $1.machine.rank! }.map { worker in
            worker.machine.parameters.withUnsafeBufferPointer {
                Evaluator(network: network, dataset: splits[worker.machine.rank!]).evaluate($0).accuracy
            }
        }
        XCTAssertEqual(last.clientAccuracy, direct)
        XCTAssertEqual(last.clientAccuracyWorst, direct.min())
        XCTAssertEqual(last.clientAccuracyMean!, direct.reduce(0, +) / 4, accuracy: 1e-12)
        // The weighted mean weighs each client by its training examples.
        let sizes = try shards(configuration).map { Double($0.count) }
        let weighted = zip(direct, sizes).reduce(0) { $0 + $1.0 * $1.1 } / sizes.reduce(0, +)
        XCTAssertEqual(last.clientAccuracyWeightedMean!, weighted, accuracy: 1e-12)
        let summary = result.coordinator.summary
        XCTAssertEqual(summary.clientAccuracyMeanLast, last.clientAccuracyMean)
        XCTAssertNotNil(summary.clientAccuracyBestRound)
    }

    func testBytesPerWorkerPerRound_AreTheGossipTraffic() throws {
        let configuration = smallConfiguration(workers: 4, rounds: 6, metricsEvery: 1_000, evalEvery: 1_000)
        let (coordinator, _) = try simulate(configuration)
        let model = Network(spec: configuration.model).parameterCount * 4
        for record in coordinator.records.dropFirst().dropLast() {
            for bytes in record.bytesSentByWorker! {
                // Two ring neighbours get the model (plus headers); reports to the coordinator are
                // diagnostics, counted apart.
                XCTAssertGreaterThanOrEqual(bytes, 2 * model)
                XCTAssertLessThan(bytes, 2 * model + 256)
            }
        }
    }
}

final class FederatedTests: XCTestCase {
    /// FedAvg and FedProx against a direct sequential computation: each round the sampled clients
    /// train from the global model (FedProx adds μ(x − global) to every gradient) and the server
    /// averages them weighted by shard size. Relative 1e-5 (summation order differs). With
    /// momentum 0.9, a client's trace starts from zero in each of its rounds (`reset`, the
    /// default) or carries over from its previous round (`keep`); the two differ.
    func testFederated_MatchesTheSequentialServer() throws {
        var finals: [ClientMomentum: [Float]] = [:]
        for (mu, momentum, clientMomentum) in [
            (0.0, 0.0, ClientMomentum.reset), (0.1, 0.0, .reset), (0.0, 0.9, .reset), (0.0, 0.9, .keep),
        ] {
            var configuration = smallConfiguration(workers: 5, rounds: 8, localSteps: 3, momentum: momentum)
            configuration.partition = .logNormal(sigma: 1)
            configuration.federated = FederatedSettings(
                clientFraction: 0.6, proximalMu: mu, clientMomentum: clientMomentum)
            configuration.topology = .fixed(try .generated(.solo, nodeCount: 5))
            try configuration.validate()
            let (coordinator, workers) = try simulate(configuration)
            let network = Network(spec: configuration.model)
            let shardSets = try shards(configuration)
            var trainers = shardSets.enumerated().map { rank, shard in
                LocalTrainer(
                    network: network, shard: shard, batchSize: configuration.batchSize, localSteps: 3,
                    optimizer: configuration.optimizer, seed: configuration.seed, rank: rank)
            }
            var global = network.initialParameters(seed: configuration.seed)
            for round in 0..<configuration.rounds {
                let sampled = configuration.federated!.aggregator.sampledClients(
                    round: round, workers: 5, seed: configuration.seed)
                XCTAssertEqual(sampled.count, 3)
                let total = sampled.reduce(0.0) { $0 + Double(shardSets[$1].count) }
                var next = [Float](repeating: 0, count: global.count)
                for client in sampled {
                    var x = global
                    if clientMomentum == .reset { trainers[client].resetOptimizerState() }
                    _ = trainers[client].train(&x, round: round, proximal: (mu: Float(mu), anchor: global))
                    next.addScaled(x, by: Float(Double(shardSets[client].count) / total))
                }
                global = next
            }
            for worker in workers {
                XCTAssertLessThan(
                    relativeDistance(worker.machine.parameters, global), 1e-5,
                    "μ = \(mu), momentum \(momentum), \(clientMomentum)")
            }
            XCTAssertEqual(coordinator.records.count, 8)
            XCTAssertNotNil(coordinator.records.last?.testAccuracy)
            if momentum > 0 { finals[clientMomentum] = global }
        }
        XCTAssertGreaterThan(
            relativeDistance(finals[.reset]!, finals[.keep]!), 1e-3, "resetting the momentum changes the run")
    }

    /// Per-client evaluation in federated mode scores the global model (what every client holds) on
    /// each client's own split, for all clients, sampled or not.
    func testFederatedClientEvaluation_ScoresEachClientsOwnModelOnItsSplit() throws {
        var configuration = smallConfiguration(workers: 4, rounds: 4, evalEvery: 2)
        configuration.partition = .pathological(classesPerWorker: 2)
        configuration.federated = FederatedSettings(clientFraction: 0.5, proximalMu: 0)
        configuration.topology = .fixed(try .generated(.solo, nodeCount: 4))
        configuration.clientTestSize = 30
        let test = try DataLoader.loadTestSet(configuration.data)
        let splits = try (0..<configuration.workers).map {
            try DataLoader.loadClientTestSplit(configuration, rank: $0, testSet: test)
        }
        let result = Simulation.run(
            configuration: configuration, runID: 1, testSet: test, report: nil, data: nil, progress: nil, log: { _ in })
        let global = try XCTUnwrap(result.workers.first?.machine.parameters)
        let network = Network(spec: configuration.model)
        let expected = splits.map { split in
            global.withUnsafeBufferPointer { Evaluator(network: network, dataset: split).evaluate($0).accuracy }
        }
        XCTAssertEqual(result.coordinator.records.last?.clientAccuracy, expected)

        // With a personal head each client is scored with its own model: the global body and its
        // own head (which the server never sees).
        configuration.personalLayers = ["layers.2"]
        let personalized = Simulation.run(
            configuration: configuration, runID: 1, testSet: test, report: nil, data: nil, progress: nil, log: { _ in })
        XCTAssertEqual(personalized.coordinator.outcome, .completed)
        let own = personalized.workers.sorted { $0.machine.rank! < $1.machine.rank! }.map { worker in
            worker.machine.parameters.withUnsafeBufferPointer {
                Evaluator(network: network, dataset: splits[worker.machine.rank!]).evaluate($0).accuracy
            }
        }
        XCTAssertEqual(personalized.coordinator.records.last?.clientAccuracy, own)
        XCTAssertNotEqual(own, expected)
        // The server's model lacks the heads, so x̄ is not scored (it would score zeros there).
        XCTAssertNil(personalized.coordinator.records.last?.testAccuracy)
        XCTAssertTrue(personalized.coordinator.machine.events.contains { $0.hasPrefix("x̄ is not evaluated") })
    }

    /// A client's validation split is ⌈f·n_k⌉ of its own n_k training examples
    /// (`clientValidationFraction` f), set aside: its training shard is the rest (the two disjoint, together the whole shard), and
    /// its deployed model is scored on them whenever it is scored on its test split, exactly as
    /// scoring that model on those rows directly.
    func testClientValidationSplit_IsCarvedFromTheShard_AndScoredWithTheTestSplit() throws {
        var configuration = smallConfiguration(workers: 4, rounds: 4, evalEvery: 2)
        configuration.partition = .dirichlet(alpha: 0.5)
        configuration.federated = FederatedSettings(clientFraction: 1, proximalMu: 0)
        configuration.topology = .fixed(try .generated(.solo, nodeCount: 4))
        configuration.clientTestSize = 30
        configuration.clientValidationFraction = 0.15
        try configuration.validate()
        func rows(_ dataset: Dataset) -> [[UInt8]] {
            (0..<dataset.count).map {
                Array(dataset.features[($0 * dataset.featureCount)..<(($0 + 1) * dataset.featureCount)])
            }
        }
        var validationSplits: [Dataset] = []
        for rank in 0..<configuration.workers {
            let whole = try DataLoader.loadShard(
                configuration.data, partition: configuration.partition, workers: 4, seed: configuration.seed,
                rank: rank)
            let training = try DataLoader.loadShard(
                configuration.data, partition: configuration.partition, workers: 4, seed: configuration.seed,
                rank: rank, validationFraction: 0.15)
            let validation = try DataLoader.loadClientValidationSplit(configuration, rank: rank)
            let size = Int((0.15 * Double(whole.count)).rounded(.up))
            XCTAssertGreaterThan(size, 0)
            XCTAssertEqual(validation.count, size)
            XCTAssertEqual(training.count, whole.count - size)
            XCTAssertEqual(
                (rows(training) + rows(validation)).map { $0.map(String.init).joined(separator: ",") }.sorted(),
                rows(whole).map { $0.map(String.init).joined(separator: ",") }.sorted(), "worker \(rank)")
            validationSplits.append(validation)
        }
        let (coordinator, workers) = try simulate(configuration)
        let global = try XCTUnwrap(workers.first?.machine.parameters)
        let network = Network(spec: configuration.model)
        let expected = validationSplits.map { split in
            global.withUnsafeBufferPointer { Evaluator(network: network, dataset: split).evaluate($0).accuracy }
        }
        let last = try XCTUnwrap(coordinator.records.last)
        XCTAssertEqual(last.clientValidationAccuracy, expected)
        XCTAssertEqual(last.clientValidationAccuracyMean!, expected.reduce(0, +) / 4, accuracy: 1e-12)
        XCTAssertEqual(last.clientValidationAccuracyWorst, expected.min())
        XCTAssertNotNil(last.clientAccuracy)

        configuration.clientValidationFraction = 0.9999
        XCTAssertThrowsError(try DataLoader.loadClientValidationSplit(configuration, rank: 0)) {
            XCTAssertTrue("\($0)".contains("would leave none to train on"), "\($0)")
        }
        configuration.clientValidationFraction = 1
        XCTAssertTrue(validationMessage(configuration).contains("must be in [0, 1)"), validationMessage(configuration))
        configuration.clientTestSize = 0
        configuration.clientValidationFraction = 0.1
        XCTAssertTrue(
            validationMessage(configuration).contains("needs --client-test-size"), validationMessage(configuration))
    }
}
