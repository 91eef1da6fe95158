import Algorithms
import Datasets
import Foundation
import LearningCore
import Optimizers
import Runtime
import Topologies
import XCTest
import _TestSupport

/// Guards restructurings of the machines (issue #18's acceptance: every existing run
/// configuration gives bit-identical records before and after): each configuration below runs in
/// simulation, and the fingerprint of its records (timings aside) and of every worker's final
/// parameters must equal the one recorded in `Fixtures/records-fingerprints.json`. A change that
/// moves any number, in any configuration, fails here by name.
///
/// The fingerprints are recorded per OpenBLAS kernel set (OpenBLAS on one thread; see the test).
/// After a deliberate change of the numbers, regenerate every core's set with
/// `OPENBLAS_CORETYPE=<core> DSGD_UPDATE_FINGERPRINTS=1 swift test --filter RecordsFingerprintTests`
/// and say why in the commit.
final class RecordsFingerprintTests: XCTestCase {
    private static var fixture: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent(
            "Fixtures/records-fingerprints.json")
    }

    /// Every configuration family the machines run: ATC/CTA, all-reduce, push-sum, schedules,
    /// momentum and local steps, batch norm (ghost, local), the CNN, federated (FedAvg, FedProx,
    /// sampled clients), every personalization algorithm with the server and over gossip,
    /// personal layers, CHOCO-SGD and gradient tracking.
    static func configurations() throws -> [(String, RunConfiguration)] {
        let base = smallConfiguration(rounds: 8, localSteps: 2, momentum: 0.9, evalEvery: 4)
        let directed = try Topology(
            name: "directed",
            graph: try Graph(
                nodeCount: 8, edges: (0..<8).map { ($0, ($0 + 1) % 8) } + [(0, 4), (0, 2), (3, 7), (5, 1)],
                directed: true),
            weights: .columnStochastic)
        var list: [(String, RunConfiguration)] = [
            ("atc-ring", base),
            ("cta-ring", base.with { $0.algorithm = .combineThenAdapt }),
            ("atc-complete-allreduce", base.with { $0.topology = .fixed(try! .complete(nodeCount: 8)) }),
            (
                "cta-complete-gossip",
                base.with {
                    $0.topology = .fixed(try! .complete(nodeCount: 8))
                    $0.algorithm = .combineThenAdapt
                    $0.allowsAllReduce = false
                }
            ),
            ("atc-push-sum", base.with { $0.topology = .fixed(directed) }),
            (
                "cta-push-sum",
                base.with {
                    $0.topology = .fixed(directed); $0.algorithm = .combineThenAdapt
                }
            ),
            ("atc-one-peer-exponential", base.with { $0.topology = .onePeerExponential(nodeCount: 8) }),
            (
                "cta-random-matching",
                base.with {
                    $0.topology = .randomMatching(nodeCount: 8, seed: 4); $0.algorithm = .combineThenAdapt
                }
            ),
            (
                "atc-dirichlet-personal-head",
                base.with {
                    $0.partition = .dirichlet(alpha: 0.3); $0.personalLayers = ["layers.2"]
                }
            ),
            (
                "atc-ghost-batch-norm",
                base.with {
                    $0.model = ModelSpec(widths: [20, 12, 10], batchNorm: true)
                    $0.batchNorm = BatchNormSettings(virtualBatchSize: 4)
                }
            ),
            (
                "cta-batch-norm-local-recomputed",
                base.with {
                    $0.algorithm = .combineThenAdapt
                    $0.model = ModelSpec(widths: [20, 12, 10], batchNorm: true)
                    $0.batchNorm = BatchNormSettings(
                        policy: .local, averageModelStatistics: .recomputed, recomputeExamples: 64)
                }
            ),
            (
                "gradient-tracking-ring",
                smallConfiguration(rounds: 8, evalEvery: 4).with { $0.algorithm = .gradientTracking }
            ),
            (
                "choco-top-k-one-peer",
                base.with {
                    $0.algorithm = .choco
                    $0.topology = .onePeerExponential(nodeCount: 8)
                    $0.gossipRule = GossipRuleSettings(compressor: .topK(ratio: 0.2), consensusStep: 0.4)
                }
            ),
        ]
        let federatedBase = base.with {
            $0.workers = 4
            $0.topology = .fixed(try! .generated(.solo, nodeCount: 4))
            // Momentum kept between a client's rounds: the behaviour these fingerprints were
            // recorded with, before `--client-momentum` (whose default is now reset).
            $0.federated = FederatedSettings(clientFraction: 1, proximalMu: 0, clientMomentum: .keep)
            $0.partition = .dirichlet(alpha: 0.3)
            $0.clientTestSize = 30
        }
        list.append(("fedavg", federatedBase))
        list.append(
            (
                "fedprox-sampled",
                federatedBase.with {
                    $0.federated = FederatedSettings(clientFraction: 0.5, proximalMu: 0.1, clientMomentum: .keep)
                }
            ))
        list.append(("fedavg-momentum-reset", federatedBase.with { $0.federated?.clientMomentum = .reset }))
        list.append(
            (
                "fedprox-sampled-momentum-reset",
                federatedBase.with { $0.federated = FederatedSettings(clientFraction: 0.5, proximalMu: 0.1) }
            ))
        list.append(
            (
                "fedavg-validation-split",
                federatedBase.with {
                    $0.federated?.clientMomentum = .reset
                    $0.clientValidationFraction = 0.1
                }
            ))
        for algorithm in PersonalizationSettings.Algorithm.allCases where algorithm != .none {
            for federated in [true, false] {
                // Local-only runs alone either way: once.
                if algorithm == .localOnly && !federated { continue }
                var base = federatedBase
                base.personalization = PersonalizationSettings(
                    algorithm: algorithm, fineTuneSteps: 3, dittoLambda: 0.5, apflAlpha: 0.3, additiveLambda: 0.2,
                    additiveMu: 0.01, curriculumRounds: 4)
                let configuration = try personalized(base, federated: federated)
                list.append(("\(algorithm.rawValue)-\(federated ? "server" : "ring")", configuration))
            }
        }
        var cnn = smallConfiguration(workers: 4, rounds: 4, evalEvery: 2)
        cnn.model = try ModelSpec(parsing: "cnn:8x8x1-2-4-10")
        cnn.data = .synthetic(seed: 2, trainCount: 200, testCount: 50, featureCount: 64)
        cnn.topology = .fixed(try .ring(nodeCount: 4))
        list.append(("cnn-ring", cnn))
        return list
    }

    /// FNV-1a (64-bit) of the records as sorted-key JSON (elapsed times removed) and of every
    /// worker's final parameters' bit patterns, in rank order.
    static func fingerprint(_ configuration: RunConfiguration) throws -> String {
        try configuration.validate()
        let test = try DataLoader.loadTestSet(configuration.data)
        let (coordinator, workers) = Simulation.run(
            configuration: configuration, runID: 42, testSet: test, report: nil, data: nil, progress: nil,
            log: { _ in })
        guard coordinator.outcome == .completed else {
            throw ConfigurationError(field: "run", reason: "did not complete")
        }
        let records = coordinator.records.map {
            var r = $0
            r.elapsedSeconds = nil
            return r
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix(_ byte: UInt8) {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01B3
        }
        for byte in try encoder.encode(records) { mix(byte) }
        for worker in workers.sorted(by: { $0.machine.rank! < $1.machine.rank! }) {
            for value in worker.machine.parameters {
                withUnsafeBytes(of: value.bitPattern.littleEndian) { for byte in $0 { mix(byte) } }
            }
        }
        return String(hash, radix: 16)
    }

    /// The fixture holds one set of fingerprints per OpenBLAS kernel set (`BLAS.coreName`: Debian's
    /// OpenBLAS picks it per CPU, or from `OPENBLAS_CORETYPE`), since kernels for other vector
    /// widths sum in other orders: the same code gives other bits on a Haswell (AVX2) kernel than
    /// on a SkylakeX (AVX-512) one. Run on a kernel set with no recording, the test is skipped and
    /// says so; record one with `OPENBLAS_CORETYPE=<core> DSGD_UPDATE_FINGERPRINTS=1 swift test
    /// --filter RecordsFingerprintTests` (it replaces only that core's set).
    func testEveryConfiguration_GivesTheRecordedNumbers() throws {
        let core = BLAS.coreName
        var fixture =
            (try? JSONDecoder().decode([String: [String: String]].self, from: Data(contentsOf: Self.fixture))) ?? [:]
        if ProcessInfo.processInfo.environment["DSGD_UPDATE_FINGERPRINTS"] != "1" && fixture[core] == nil {
            throw XCTSkip(
                "no fingerprints recorded for OpenBLAS core '\(core)' (recorded: \(fixture.keys.sorted().joined(separator: ", ")))"
            )
        }
        var computed: [String: String] = [:]
        for (name, configuration) in try Self.configurations() {
            computed[name] = try Self.fingerprint(configuration)
        }
        if ProcessInfo.processInfo.environment["DSGD_UPDATE_FINGERPRINTS"] == "1" {
            fixture[core] = computed
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
            try encoder.encode(fixture).write(to: Self.fixture)
            print("wrote \(computed.count) fingerprints for OpenBLAS core \(core) to \(Self.fixture.path)")
            return
        }
        let recorded = fixture[core]!
        XCTAssertEqual(Set(computed.keys), Set(recorded.keys), "the set of configurations changed")
        for (name, value) in computed.sorted(by: { $0.key < $1.key }) {
            XCTAssertEqual(value, recorded[name], "\(name): the numbers changed (OpenBLAS core \(core))")
        }
        // Distinct configurations give distinct numbers (a fingerprint that ignored the run would not).
        XCTAssertEqual(Set(computed.values).count, computed.count)
    }

    /// Every recorded kernel set covers exactly the configurations the test runs (no set left
    /// stale when a configuration is added or renamed).
    func testRecordedCores_CoverTheSameConfigurations() throws {
        let fixture = try JSONDecoder().decode([String: [String: String]].self, from: Data(contentsOf: Self.fixture))
        XCTAssertFalse(fixture.isEmpty)
        let names = try Set(Self.configurations().map(\.0))
        for (core, recorded) in fixture { XCTAssertEqual(Set(recorded.keys), names, core) }
    }
}
