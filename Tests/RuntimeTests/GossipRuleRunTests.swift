import Algorithms
import Datasets
import Foundation
import LearningCore
import Optimizers
import Runtime
import Topologies
import XCTest
import _TestSupport

/// CHOCO-SGD and gradient tracking run by the worker machine through the `GossipRule` seam,
/// against oracles: D-SGD itself, their dense matrix forms, C-SGD, and a global minimizer computed
/// independently.
final class GossipRuleRunTests: XCTestCase {
    private func records(_ configuration: RunConfiguration) throws -> ([RoundRecord], [[Float]]) {
        let (coordinator, workers) = try simulate(configuration)
        let stripped = coordinator.records.map {
            var r = $0
            r.elapsedSeconds = nil
            r.bytesSent = 0
            r.bytesSentByWorker = nil
            return r
        }
        return (stripped, workers.sorted { $0.machine.rank! < $1.machine.rank! }.map(\.machine.parameters))
    }

    private func choco(_ base: RunConfiguration, _ compressor: Compressor, step: Double) -> RunConfiguration {
        base.with {
            $0.algorithm = .choco
            $0.gossipRule = GossipRuleSettings(compressor: compressor, consensusStep: step)
        }
    }

    /// With the identity compressor and γ = 1, CHOCO-SGD is D-SGD (ATC): every record and every
    /// worker's final parameters equal bit for bit, on a ring and on the one-peer exponential graph
    /// (where CHOCO exchanges with every peer of the period but mixes only the round's).
    func testChocoWithIdentityAndUnitStep_IsATC_BitForBit() throws {
        for topology: TopologySchedule in [.fixed(try .ring(nodeCount: 8)), .onePeerExponential(nodeCount: 8)] {
            let base = smallConfiguration(rounds: 12, localSteps: 2, momentum: 0.9).with { $0.topology = topology }
            let (atcRecords, atcModels) = try records(base)
            let (chocoRecords, chocoModels) = try records(choco(base, .identity, step: 1))
            XCTAssertEqual(chocoRecords, atcRecords, topology.name)
            XCTAssertTrue(chocoModels == atcModels, "\(topology.name): final parameters differ")
            // Not trivially equal: the models moved apart and gossip pulled them together.
            XCTAssertGreaterThan(atcRecords.last!.consensusDistanceSquared!, 0)
        }
    }

    /// Compressed CHOCO-SGD through the machine equals the paper's matrix form with the same local
    /// steps and random streams (relative 1e-5: the mixing sums the same terms in another order,
    /// ≈1e-7 per round in Float32; a stale or missing public copy is off by ≥1e-2), on a ring and
    /// on a changing graph; and the bytes each worker sends per round are the compressed size.
    func testCompressedChoco_MatchesTheMatrixForm_AndSendsTheCompressedSize() throws {
        for (topology, compressor, step) in [
            (TopologySchedule.fixed(try .ring(nodeCount: 8)), Compressor.randomK(ratio: 0.2), 0.4),
            (.onePeerExponential(nodeCount: 8), .sign, 0.2),
            (.fixed(try .ring(nodeCount: 8)), .topK(ratio: 0.3), 0.5),
        ] {
            let configuration = choco(
                smallConfiguration(rounds: 15).with { $0.topology = topology }, compressor, step: step)
            let (coordinator, workers) = try simulate(configuration)
            let network = Network(spec: configuration.model)
            let reference = denseReferenceChoco(
                network: network, shards: try shards(configuration), topology: topology,
                batchSize: configuration.batchSize, localSteps: 1, optimizer: configuration.optimizer,
                seed: configuration.seed, rounds: configuration.rounds, compressor: compressor,
                consensusStep: Float(step))
            for worker in workers {
                let rank = worker.machine.rank!
                XCTAssertLessThan(
                    relativeDistance(worker.machine.parameters, reference[rank]), 1e-5,
                    "\(compressor) on \(topology.name), worker \(rank)")
            }
            // Per round and worker: one message per peer of the period, each the compressed vector
            // plus the envelope's fixed header; far below a dense model.
            let peers = GossipRuleContext(
                rank: 0, workers: 8, parameterCount: network.parameterCount, seed: 0, topology: topology
            ).peersOverTheSchedule.count
            let records = coordinator.records
            let perRound = records[1].bytesSentByWorker![0] / peers
            let d = network.parameterCount
            let payload: Int
            switch compressor {
            case .randomK(let ratio), .topK(let ratio): payload = 5 + 8 * Compressor.keptCount(ratio: ratio, of: d)
            case .sign: payload = 5 + (d + 7) / 8
            default: payload = 0
            }
            XCTAssertGreaterThanOrEqual(perRound, payload, "\(compressor)")
            XCTAssertLessThan(perRound, payload + 128, "\(compressor): more than the compressed vector and a header")
            XCTAssertLessThan(perRound, 4 * d, "\(compressor): not below a dense model")
        }
    }

    /// Gradient tracking through the machine equals its dense matrix form (relative 1e-5, as for
    /// D-SGD's reference), on a ring, the one-peer exponential graph and random matchings.
    func testGradientTracking_MatchesTheMatrixForm() throws {
        for topology: TopologySchedule in [
            .fixed(try .ring(nodeCount: 8)), .onePeerExponential(nodeCount: 8), .randomMatching(nodeCount: 8, seed: 5),
        ] {
            let configuration = smallConfiguration(rounds: 15).with {
                $0.topology = topology
                $0.algorithm = .gradientTracking
            }
            let (_, workers) = try simulate(configuration)
            let reference = denseReferenceGradientTracking(
                network: Network(spec: configuration.model), shards: try shards(configuration), topology: topology,
                batchSize: configuration.batchSize, optimizer: configuration.optimizer, seed: configuration.seed,
                rounds: configuration.rounds)
            XCTAssertGreaterThan(directConsensusDistanceSquared(reference), 0)
            for worker in workers {
                let rank = worker.machine.rank!
                XCTAssertLessThan(
                    relativeDistance(worker.machine.parameters, reference[rank]), 1e-5,
                    "\(topology.name), worker \(rank)")
            }
        }
    }

    /// On the complete graph with uniform weights gradient tracking is C-SGD: every xᵢ is
    /// x̄ − η·(mean of the workers' gradients at x̄). Against ATC on the same graph (which
    /// averages by all-reduce): relative 1e-5 (the trackers' sum equals the gradients' only up to
    /// Float32 rounding).
    func testGradientTracking_OnTheCompleteGraph_IsCSGD() throws {
        let base = smallConfiguration(workers: 6, topology: try .complete(nodeCount: 6), rounds: 15)
        let (_, csgd) = try records(base)
        let (_, tracking) = try records(base.with { $0.algorithm = .gradientTracking })
        for rank in 0..<6 {
            XCTAssertLessThan(relativeDistance(tracking[rank], csgd[rank]), 1e-5, "worker \(rank)")
        }
    }

    /// The reason gradient tracking exists: on a ring with one class per worker, full local
    /// gradients and a constant step, L2-regularized logistic regression converges to the global
    /// minimizer of (1/n)Σᵢ fᵢ(x) + (λ/2)‖x‖², computed here by Newton's method in Float64 on the
    /// same data (independent of the network code); D-SGD with the same step stops at a distance
    /// of order η. Tolerances: gradient tracking within 1e-4 relative of x* (Float32 iterates; the
    /// linear rate leaves about 1e-5 after 300 rounds); D-SGD at least 10×
    /// farther than that and above 1e-3.
    func testGradientTracking_ReachesTheGlobalMinimizer_WhereDSGDDoesNot() throws {
        let workers = 8
        let weightDecay = 0.1
        var base = smallConfiguration(workers: workers, rounds: 300, batchSize: 50, metricsEvery: 300, evalEvery: 300)
        base.model = ModelSpec(widths: [8, 10])
        base.data = .synthetic(seed: 2, trainCount: 400, testCount: 100, featureCount: 8)
        base.partition = .pathological(classesPerWorker: 1)
        base.optimizer = OptimizerSettings(schedule: .constant(0.5), weightDecay: weightDecay)
        let data = try shards(base)
        XCTAssertEqual(
            data.map(\.count), Array(repeating: 50, count: workers), "full local gradients need equal shards")
        XCTAssertTrue(data.allSatisfy { Set($0.labels).count <= 3 }, "label skew: at most 3 of the 10 classes each")
        let minimizer = newtonMinimizer(shards: data, features: 8, classes: 10, weightDecay: weightDecay)

        func distance(_ models: [[Float]]) -> Double {
            models.map { model in
                let difference = zip(model, minimizer).reduce(0.0) {
                    $0 + (Double($1.0) - $1.1) * (Double($1.0) - $1.1)
                }
                return (difference / minimizer.reduce(0.0) { $0 + $1 * $1 }).squareRoot()
            }.max()!
        }
        let (_, tracking) = try records(base.with { $0.algorithm = .gradientTracking })
        let (_, dsgd) = try records(base)
        let trackingDistance = distance(tracking)
        let dsgdDistance = distance(dsgd)
        XCTAssertLessThan(trackingDistance, 1e-4, "gradient tracking to x*")
        XCTAssertGreaterThan(dsgdDistance, 1e-3, "D-SGD to x*")
        XCTAssertGreaterThan(dsgdDistance, 10 * trackingDistance)
    }

    /// What the rules need is refused at configuration, naming the flag.
    func testRuleAlgorithms_RefuseWhatTheyCannotRun() throws {
        let tracking = smallConfiguration().with { $0.algorithm = .gradientTracking }
        XCTAssertEqual(validationMessage(tracking), "no error")
        XCTAssertTrue(validationMessage(tracking.with { $0.localSteps = 2 }).hasPrefix("--local-steps"))
        XCTAssertTrue(
            validationMessage(
                tracking.with {
                    $0.optimizer.momentum = 0.9; $0.optimizer.momentumKind = .heavyBall
                }
            )
            .hasPrefix("--momentum"))
        XCTAssertTrue(
            validationMessage(tracking.with { $0.model = ModelSpec(widths: [20, 12, 10], batchNorm: true) }).hasPrefix(
                "--model"))
        XCTAssertTrue(validationMessage(tracking.with { $0.failurePolicy = .continue }).hasPrefix("--on-failure"))
        let chocoRun = choco(smallConfiguration(), .sign, step: 0.5)
        XCTAssertEqual(validationMessage(chocoRun), "no error")
        XCTAssertTrue(validationMessage(choco(smallConfiguration(), .sign, step: 1.5)).hasPrefix("--consensus-step"))
        XCTAssertTrue(validationMessage(chocoRun.with { $0.personalLayers = ["layers.2"] }).hasPrefix("--algorithm"))
        XCTAssertTrue(
            validationMessage(smallConfiguration().with { $0.gossipRule = GossipRuleSettings() }).hasPrefix(
                "--compressor"))
        let directed = try Topology(
            name: "directed-cycle",
            graph: try Graph(nodeCount: 3, edges: [(0, 1), (1, 2), (2, 0), (0, 2)], directed: true),
            weights: .columnStochastic)
        XCTAssertTrue(
            validationMessage(
                choco(smallConfiguration(workers: 3, topology: directed), .sign, step: 0.5)
            ).hasPrefix("--topology"))
    }
}

/// argmin (1/n)Σᵢ (1/mᵢ)Σ_{(a,c) ∈ shard i} CE(softmax(W a + b), c) + (λ/2)(‖W‖² + ‖b‖²) by Newton's
/// method in Float64, in the network's layout (W row-major classes × features, then b); features
/// scaled by 1/255 as the loader does. Stops when the gradient's norm is below 1e-10 (x within
/// 1e-10/λ = 1e-9 of x*).
private func newtonMinimizer(shards: [Dataset], features: Int, classes: Int, weightDecay: Double) -> [Double] {
    let p = classes * (features + 1)
    var x = [Double](repeating: 0, count: p)
    func index(_ c: Int, _ f: Int) -> Int { f < features ? c * features + f : classes * features + c }
    for _ in 0..<50 {
        var gradient = x.map { weightDecay * $0 }
        var hessian = [Double](repeating: 0, count: p * p)
        for i in 0..<p { hessian[i * p + i] = weightDecay }
        for shard in shards {
            let scale = 1 / (Double(shards.count) * Double(shard.count))
            for e in 0..<shard.count {
                var a = (0..<features).map { Double(shard.features[e * features + $0]) * (1.0 / 255) }
                a.append(1)
                var logits = (0..<classes).map { c in (0...features).reduce(0.0) { $0 + x[index(c, $1)] * a[$1] } }
                let top = logits.max()!
                logits = logits.map { Foundation.exp($0 - top) }
                let total = logits.reduce(0, +)
                let probabilities = logits.map { $0 / total }
                let label = Int(shard.labels[e])
                for c in 0..<classes {
                    let residual = probabilities[c] - (c == label ? 1 : 0)
                    for f in 0...features { gradient[index(c, f)] += scale * residual * a[f] }
                    for c2 in 0..<classes {
                        let weight = scale * probabilities[c] * ((c == c2 ? 1 : 0) - probabilities[c2])
                        if weight == 0 { continue }
                        for f in 0...features {
                            let row = index(c, f) * p
                            for f2 in 0...features { hessian[row + index(c2, f2)] += weight * a[f] * a[f2] }
                        }
                    }
                }
            }
        }
        if gradient.reduce(0.0, { $0 + $1 * $1 }).squareRoot() < 1e-10 { break }
        // Solve H·step = gradient by Cholesky (H is positive definite: λ > 0).
        var l = hessian
        for j in 0..<p {
            var diagonal = l[j * p + j]
            for k in 0..<j { diagonal -= l[j * p + k] * l[j * p + k] }
            l[j * p + j] = diagonal.squareRoot()
            for i in (j + 1)..<p {
                var value = l[i * p + j]
                for k in 0..<j { value -= l[i * p + k] * l[j * p + k] }
                l[i * p + j] = value / l[j * p + j]
            }
        }
        var y = gradient
        for i in 0..<p {
            for k in 0..<i { y[i] -= l[i * p + k] * y[k] }
            y[i] /= l[i * p + i]
        }
        for i in stride(from: p - 1, through: 0, by: -1) {
            for k in (i + 1)..<p { y[i] -= l[k * p + i] * y[k] }
            y[i] /= l[i * p + i]
        }
        for i in 0..<p { x[i] -= y[i] }
    }
    return x
}
