import Algorithms
import Foundation
import LearningCore
import Topologies
import XCTest
import _TestSupport

/// Spectral gaps against closed forms (tolerance 1e-6: LAPACK's eigenvalues are backward stable,
/// accurate to about n·ε·‖W‖ ≈ 1e-13 here; 1e-6 leaves room without hiding a wrong formula, which
/// would be off by ≥ 1e-3 on these sizes).
final class SpectrumTests: XCTestCase {
    func testRing_MatchesClosedForm() throws {
        for n in [3, 4, 5, 8, 16, 33, 64] {
            let gap = Spectrum.summary(of: try .ring(nodeCount: n)).spectralGap
            XCTAssertEqual(gap, 1 - (1.0 / 3 + 2.0 / 3 * cos(2 * Double.pi / Double(n))), accuracy: 1e-6, "ring \(n)")
        }
    }

    func testComplete_IsExactAveraging() throws {
        for n in [2, 5, 16] {
            XCTAssertEqual(Spectrum.summary(of: try .complete(nodeCount: n)).spectralGap, 1, accuracy: 1e-6)
        }
    }

    func testHypercube_MatchesClosedForm() throws {
        // W = (I + A)/(d + 1) with A's eigenvalues d − 2k: second modulus (d − 1)/(d + 1).
        for d in 1...6 {
            let n = 1 << d
            let gap = Spectrum.summary(of: try .generated(.hypercube, nodeCount: n)).spectralGap
            XCTAssertEqual(gap, 2.0 / Double(d + 1), accuracy: 1e-6, "hypercube \(n)")
        }
    }

    func testTorus_MatchesClosedForm() throws {
        // Degree 4, MH weights 1/5: eigenvalues (1 + 2cos(2πa/r) + 2cos(2πb/c))/5.
        for (r, c) in [(3, 3), (4, 4), (3, 5), (4, 8)] {
            var moduli: [Double] = []
            for a in 0..<r {
                for b in 0..<c {
                    moduli.append(
                        abs(
                            (1 + 2 * cos(2 * Double.pi * Double(a) / Double(r)) + 2
                                * cos(2 * Double.pi * Double(b) / Double(c))) / 5))
                }
            }
            moduli.sort(by: >)
            let gap = Spectrum.summary(of: try .generated(.torus(rows: r, columns: c), nodeCount: r * c)).spectralGap
            XCTAssertEqual(gap, 1 - moduli[1], accuracy: 1e-6, "torus \(r)x\(c)")
        }
    }

    func testExponential_MatchesYingEtAl() throws {
        // Static exponential graph, uniform weights 1/(τ+1), τ = log₂ n: second modulus 1 − 2/(τ + 1).
        for tau in 1...6 {
            let n = 1 << tau
            let topology = try Topology.generated(.exponential, nodeCount: n)
            XCTAssertTrue(topology.isDoublyStochastic)
            XCTAssertEqual(Spectrum.summary(of: topology).spectralGap, 2.0 / Double(tau + 1), accuracy: 1e-6, "n \(n)")
        }
    }

    func testOnePeerExponential_PeriodProductIsExactAverage() {
        for n in [2, 4, 8, 16, 32] {
            let spectrum = ScheduleSpectrum(.onePeerExponential(nodeCount: n))
            XCTAssertEqual(spectrum.productRounds, max(Int(log2(Double(n))), 1))
            XCTAssertEqual(spectrum.product.spectralGap, 1, accuracy: 1e-6, "n \(n)")
            let product = Spectrum.product((0..<spectrum.productRounds).map { ScheduleSpectrum.onePeer(n, $0) })
            for value in product { XCTAssertEqual(value, 1 / Double(n), accuracy: 1e-12) }
        }
    }

    func testGeneralSolver_AgreesWithSymmetricSolver_AndTriangularDiagonal() {
        var generator = SplitMix64(seed: 4)
        let n = 12
        var a = [Double](repeating: 0, count: n * n)
        for i in 0..<n { for j in 0...i { let v = generator.nextStandardNormal(); a[i * n + j] = v; a[j * n + i] = v } }
        let symmetric = Spectrum.symmetricEigenvalues(a, n: n).sorted()
        let general = Spectrum.generalEigenvalues(a, n: n)
        XCTAssertTrue(general.allSatisfy { abs($0.1) < 1e-9 })
        for (x, y) in zip(symmetric, general.map(\.0).sorted()) { XCTAssertEqual(x, y, accuracy: 1e-9) }
        // Upper-triangular, non-symmetric: eigenvalues are the diagonal.
        var t = [Double](repeating: 0, count: n * n)
        for i in 0..<n { for j in i..<n { t[i * n + j] = i == j ? Double(i + 1) : generator.nextStandardNormal() } }
        let values = Spectrum.generalEigenvalues(t, n: n).map(\.0).sorted()
        for (i, value) in values.enumerated() { XCTAssertEqual(value, Double(i + 1), accuracy: 1e-9) }
    }

    func testContraction_OfNonSymmetricDoublyStochastic_IsLargestSingularValueOffConsensus() {
        // One-peer W = (I + P)/2 with P a cyclic shift by 1 on n = 8: σ = |(1 + e^{2πi/8})/2| = cos(π/8).
        let summary = Spectrum.summary(of: ScheduleSpectrum.onePeer(8, 0))
        XCTAssertEqual(summary.contraction!, cos(Double.pi / 8), accuracy: 1e-9)
    }

    /// Gossip alone (the workers' own mixing code) from random models: Ξ² never shrinks by less than
    /// the predicted σ² per round, and its asymptotic rate equals (1 − gap)² for symmetric W; the
    /// ordering ring (slowest) > symmetric exponential > complete (one round) holds as measured.
    func testConsensusDistance_ContractsAtThePredictedRate() throws {
        let n = 16
        var rates: [String: Double] = [:]
        for generator in [GraphGenerator.ring, .symmetricExponential, .complete] {
            let topology = try Topology.generated(generator, nodeCount: n)
            let sigma = Spectrum.summary(of: topology).contraction!
            var random = SplitMix64(seed: 9)
            var models = (0..<n).map { _ in (0..<64).map { _ in Float(random.nextStandardNormal()) } }
            let initial = directConsensusDistanceSquared(models)
            var previous = initial
            var lastRate = 0.0
            // Stop at 1e-8 of the start: below that, Float32 rounding noise is what is measured.
            for _ in 0..<60 where previous > 1e-8 * initial {
                models = gossipOnce(models, topology)
                let current = directConsensusDistanceSquared(models)
                lastRate = current / previous
                XCTAssertLessThanOrEqual(lastRate, sigma * sigma + 1e-6, "\(generator)")
                previous = current
            }
            rates[generator.description] = lastRate
            if generator == .ring {
                XCTAssertEqual(lastRate, sigma * sigma, accuracy: 2e-3, "ring's asymptotic rate is (1 − gap)²")
            }
        }
        XCTAssertGreaterThan(rates["ring"]!, rates["symmetric-exponential"]!)
        XCTAssertGreaterThan(rates["symmetric-exponential"]!, rates["complete"]!)
    }

    private func gossipOnce(_ models: [[Float]], _ topology: Topology) -> [[Float]] {
        models.indices.map { i in
            var x = models[i]
            let row = topology.mixing[i]
            withExtendedLifetime(models) {
                let terms = row.filter { $0.node != i }.map {
                    Gossip.Term(weight: Float($0.weight), values: models[$0.node].withUnsafeBufferPointer { $0 })
                }
                Gossip.adaptThenCombine(&x, selfWeight: Float(row.first { $0.node == i }!.weight), neighbors: terms)
            }
            return x
        }
    }
}

extension ScheduleSpectrum {
    static func onePeer(_ n: Int, _ round: Int) -> Topology {
        TopologySchedule.onePeerExponential(nodeCount: n).topology(atRound: round)
    }
}

/// Spectral gaps of graphs without closed forms against an independent dense solver: the cyclic
/// Jacobi eigenvalue method written here (Golub and Van Loan, §8.5), agreeing within 1e-6.
final class JacobiOracleTests: XCTestCase {
    func testGaps_MatchJacobi() throws {
        let cases: [(GraphGenerator, Int)] = [
            (.star, 9), (.twoCliques, 10), (.binaryTree, 15), (.wattsStrogatz(neighbors: 4, rewiring: 0.3), 20),
            (.erdosRenyi(probability: 0.3), 16), (.randomRegular(degree: 3), 12), (.path, 7),
            (.grid(rows: 3, columns: 5), 15),
        ]
        for (generator, n) in cases {
            for rule in [WeightRule.metropolisHastings, .maximumDegree] {
                let topology = try Topology.generated(generator, nodeCount: n, seed: 3, weights: rule)
                let eigenvalues = jacobiEigenvalues(topology.denseMixingMatrix, n: n).map(abs).sorted(by: >)
                XCTAssertEqual(
                    Spectrum.summary(of: topology).spectralGap, 1 - eigenvalues[1], accuracy: 1e-6,
                    "\(generator) \(rule)")
            }
        }
    }

    private func jacobiEigenvalues(_ matrix: [Double], n: Int) -> [Double] {
        var a = matrix
        for _ in 0..<100 {
            var off = 0.0
            for i in 0..<n { for j in 0..<n where i != j { off += a[i * n + j] * a[i * n + j] } }
            if off < 1e-26 { break }
            for p in 0..<n {
                for q in (p + 1)..<n where abs(a[p * n + q]) > 1e-300 {
                    let theta = (a[q * n + q] - a[p * n + p]) / (2 * a[p * n + q])
                    let t = (theta >= 0 ? 1 : -1) / (abs(theta) + (theta * theta + 1).squareRoot())
                    let c = 1 / (t * t + 1).squareRoot()
                    let s = t * c
                    for k in 0..<n {
                        let akp = a[k * n + p]
                        let akq = a[k * n + q]
                        a[k * n + p] = c * akp - s * akq
                        a[k * n + q] = s * akp + c * akq
                    }
                    for k in 0..<n {
                        let apk = a[p * n + k]
                        let aqk = a[q * n + k]
                        a[p * n + k] = c * apk - s * aqk
                        a[q * n + k] = s * apk + c * aqk
                    }
                }
            }
        }
        return (0..<n).map { a[$0 * n + $0] }
    }
}
