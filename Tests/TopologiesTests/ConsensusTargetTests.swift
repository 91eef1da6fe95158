import Topologies
import XCTest

/// Where plain gossip converges: π of the mixing matrices, against closed forms and dense powers.
final class ConsensusTargetTests: XCTestCase {
    /// Uniform weights Wᵢⱼ = 1/(dᵢ + 1) on an undirected graph are a reversible random walk with
    /// stationary distribution πᵢ = (dᵢ + 1)/Σⱼ(dⱼ + 1) (closed form; 1e-12 absolute: the power
    /// iteration stops when π moves less than 1e-14).
    func testUniformWeights_OnIrregularGraphs_MatchTheClosedForm() throws {
        for generator in [GraphGenerator.star, .path, .twoCliques, .binaryTree] {
            let graph = try generator.make(nodeCount: 8, seed: 0)
            let topology = try Topology(name: "u", graph: graph, weights: .uniform)
            let target = try XCTUnwrap(TopologySchedule.fixed(topology).consensusTarget)
            let degrees = (0..<8).map { Double(graph.outNeighbors[$0].count + 1) }
            let total = degrees.reduce(0, +)
            for i in 0..<8 { XCTAssertEqual(target.weights[i], degrees[i] / total, accuracy: 1e-12, "\(generator)") }
            XCTAssertTrue(target.isBiased, "\(generator)")
            XCTAssertTrue(target.description.contains("π-weighted average"))
        }
    }

    /// Doubly stochastic weights converge to the plain average: π uniform, not biased.
    func testDoublyStochastic_IsUnbiased() throws {
        for rule in [WeightRule.metropolisHastings, .maximumDegree, .sinkhorn] {
            let topology = try Topology(
                name: "s", graph: try GraphGenerator.star.make(nodeCount: 7, seed: 0), weights: rule)
            let target = try XCTUnwrap(TopologySchedule.fixed(topology).consensusTarget)
            XCTAssertFalse(target.isBiased, "\(rule)")
            XCTAssertEqual(target.totalVariation, 0, accuracy: 1e-12)
        }
    }

    /// A periodic schedule of row-stochastic phases: after many periods, the dense product applied
    /// to any x₀ gives every node πᵀx₀ (1e-9: 400 periods of a contraction ≤ 0.9).
    func testPeriodicSchedule_DensePowersConvergeToPiWeightedAverage() throws {
        let phases = [
            try Topology(name: "a", graph: try GraphGenerator.star.make(nodeCount: 5, seed: 0), weights: .uniform),
            try Topology(name: "b", graph: try GraphGenerator.path.make(nodeCount: 5, seed: 0), weights: .uniform),
        ]
        let schedule = TopologySchedule.periodic(name: "star-path", phases: phases)
        let target = try XCTUnwrap(schedule.consensusTarget)
        var x: [Double] = [3, -1, 4, 1, -5]
        let expected = zip(target.weights, x).reduce(0) { $0 + $1.0 * $1.1 }
        for _ in 0..<400 {
            for phase in phases {
                let w = phase.denseMixingMatrix
                x = (0..<5).map { i in (0..<5).reduce(0.0) { $0 + w[i * 5 + $1] * x[$1] } }
            }
        }
        for value in x { XCTAssertEqual(value, expected, accuracy: 1e-9) }
        let plain = (3.0 - 1 + 4 + 1 - 5) / 5
        XCTAssertGreaterThan(abs(expected - plain), 1e-3, "the check cannot tell π from uniform")
    }

    /// Push-sum de-biases: no target reported.
    func testPushSum_HasNoBiasedTarget() throws {
        let graph = try Graph(nodeCount: 4, edges: [(0, 1), (1, 2), (2, 3), (3, 0), (0, 2)], directed: true)
        let topology = try Topology(name: "d", graph: graph, weights: .columnStochastic)
        XCTAssertNil(TopologySchedule.fixed(topology).consensusTarget)
    }
}
