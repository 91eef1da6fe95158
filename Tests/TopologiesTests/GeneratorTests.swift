import LearningCore
import Topologies
import XCTest
import _TestSupport

/// Every generator and weight rule over n ∈ {1, 2, 3, 8, 16, 33}.
final class GeneratorTests: XCTestCase {
    static let generators: [GraphGenerator] = [
        .ring, .path, .hypercube, .exponential, .symmetricExponential, .complete, .star, .binaryTree, .twoCliques,
        .randomRegular(degree: 2), .randomRegular(degree: 3), .erdosRenyi(probability: 0.5),
        .wattsStrogatz(neighbors: 2, rewiring: 0.3),
        .solo,
    ]

    func testEveryGenerator_PromisesHold() throws {
        for generator in Self.generators {
            for n in [1, 2, 3, 8, 16, 33] {
                let topology: Topology
                do {
                    topology = try Topology.generated(generator, nodeCount: n, seed: 5)
                } catch {
                    // Only documented restrictions may refuse a size, with a message saying why.
                    let reason = "\(error)"
                    XCTAssertTrue(
                        reason.contains("power of 2") || reason.contains("n·d even") || reason.contains("2 ≤ k < n")
                            || reason.contains("disconnected"),
                        "\(generator) n=\(n): \(reason)")
                    continue
                }
                let label = "\(generator) n=\(n)"
                XCTAssertEqual(topology.nodeCount, n, label)
                XCTAssertTrue(topology.mixing.allSatisfy { $0.allSatisfy { $0.weight >= 0 } }, label)
                XCTAssertTrue(topology.isRowStochastic, label)
                if generator != .solo { XCTAssertTrue(topology.isConnected || n == 1, label) }
                if !topology.isDirected {
                    XCTAssertTrue(topology.isSymmetric, label)
                    XCTAssertTrue(topology.isDoublyStochastic, label)
                }
                if generator == .exponential && n & (n - 1) == 0 { XCTAssertTrue(topology.isDoublyStochastic, label) }
            }
        }
    }

    func testEveryWeightRule_OnIrregularGraphs() throws {
        for generator in [GraphGenerator.star, .twoCliques, .binaryTree, .erdosRenyi(probability: 0.3)] {
            let graph = try generator.make(nodeCount: 12, seed: 1)
            for rule in [WeightRule.metropolisHastings, .maximumDegree, .sinkhorn] {
                let topology = try Topology(name: "x", graph: graph, weights: rule)
                XCTAssertTrue(topology.isDoublyStochastic, "\(rule) on \(generator)")
                XCTAssertTrue(topology.isSymmetric, "\(rule) on \(generator)")
            }
            let uniform = try Topology(name: "x", graph: graph, weights: .uniform)
            XCTAssertTrue(uniform.isRowStochastic)
            XCTAssertFalse(uniform.isColumnStochastic, "uniform weights are not doubly stochastic on \(generator)")
        }
    }

    func testColumnStochastic_OnIrregularDirectedGraph_NeedsPushSum() throws {
        let graph = try Graph(
            nodeCount: 5, edges: [(0, 1), (1, 2), (2, 3), (3, 4), (4, 0), (0, 2), (0, 3)], directed: true)
        let topology = try Topology(name: "d", graph: graph, weights: .columnStochastic)
        XCTAssertTrue(topology.isColumnStochastic)
        XCTAssertFalse(topology.isRowStochastic)
        XCTAssertTrue(topology.requiresPushSum)
        XCTAssertThrowsError(try Topology(name: "d", graph: graph, weights: .metropolisHastings)) {
            XCTAssertTrue("\($0)".contains("undirected"))
        }
    }

    func testShapes() throws {
        XCTAssertEqual(try GraphGenerator.torus(rows: 4, columns: 4).make(nodeCount: 16).edgeCount, 32)
        XCTAssertEqual(try GraphGenerator.grid(rows: 3, columns: 4).make(nodeCount: 12).edgeCount, 17)
        XCTAssertEqual(try GraphGenerator.hypercube.make(nodeCount: 16).edgeCount, 32)
        XCTAssertEqual(try GraphGenerator.exponential.make(nodeCount: 16).edgeCount, 64)
        XCTAssertEqual(try GraphGenerator.twoCliques.make(nodeCount: 8).edgeCount, 13)
        XCTAssertEqual(try GraphGenerator.binaryTree.make(nodeCount: 7).diameter, 4)
        XCTAssertEqual(try GraphGenerator.path.make(nodeCount: 5).diameter, 4)
        XCTAssertNil(try GraphGenerator.solo.make(nodeCount: 3).diameter)
        let regular = try GraphGenerator.randomRegular(degree: 4).make(nodeCount: 20, seed: 3)
        XCTAssertTrue((0..<20).allSatisfy { regular.degree(of: $0) == 4 })
        XCTAssertThrowsError(try GraphGenerator.grid(rows: 3, columns: 3).make(nodeCount: 8)) {
            XCTAssertTrue("\($0)".contains("9 nodes"))
        }
    }

    func testRandomGenerators_AreSeeded() throws {
        for generator in [
            GraphGenerator.randomRegular(degree: 3), .erdosRenyi(probability: 0.3),
            .wattsStrogatz(neighbors: 4, rewiring: 0.5),
        ] {
            let a = try generator.make(nodeCount: 20, seed: 1)
            XCTAssertEqual(a, try generator.make(nodeCount: 20, seed: 1))
            XCTAssertNotEqual(a, try generator.make(nodeCount: 20, seed: 2), "\(generator)")
        }
    }

    func testGeneratorNames_RoundTrip() {
        for generator in Self.generators + [.grid(rows: 2, columns: 3), .torus(rows: 4, columns: 4)] {
            XCTAssertEqual(GraphGenerator(parsing: generator.description), generator)
        }
        XCTAssertNil(GraphGenerator(parsing: "torus:4"))
        XCTAssertNil(GraphGenerator(parsing: "moebius"))
    }

    func testSchedules_AreSeededAndShaped() throws {
        let n = 10
        let matching = TopologySchedule.randomMatching(nodeCount: n, seed: 3)
        for t in 0..<5 {
            let round = matching.topology(atRound: t)
            XCTAssertTrue((0..<n).allSatisfy { round.graph.degree(of: $0) == 1 }, "perfect matching")
            XCTAssertTrue(round.isDoublyStochastic)
            XCTAssertEqual(round, matching.topology(atRound: t))
        }
        XCTAssertNotEqual(matching.topology(atRound: 0), matching.topology(atRound: 1))
        XCTAssertNotEqual(
            matching.topology(atRound: 0), TopologySchedule.randomMatching(nodeCount: n, seed: 4).topology(atRound: 0))
        let base = try Topology.generated(.ring, nodeCount: n)
        let shuffled = TopologySchedule.randomPermutation(base: base, seed: 1).topology(atRound: 2)
        XCTAssertEqual(
            Spectrum.summary(of: shuffled).spectralGap, Spectrum.summary(of: base).spectralGap, accuracy: 1e-9)
        XCTAssertNotEqual(shuffled.mixing, base.mixing)
        let onePeer = TopologySchedule.onePeerExponential(nodeCount: 8)
        XCTAssertEqual(onePeer.period, 3)
        XCTAssertEqual(onePeer.topology(atRound: 1).inNeighbors(of: 0), [6])
        XCTAssertEqual(onePeer.topology(atRound: 4).inNeighbors(of: 0), [6])
        let regular = TopologySchedule.randomRegular(nodeCount: 12, degree: 3, seed: 2)
        XCTAssertTrue((0..<12).allSatisfy { regular.topology(atRound: 7).graph.degree(of: $0) == 3 })
    }

    /// random-regular-each-round:D with D ≥ 6 used to pass the start-up check and then fail in
    /// some rounds (rejection sampling of simple pairings fails about a fifth of the time at
    /// D = 6, always at D = 8): every round of a long run now yields a connected simple D-regular
    /// graph, the same for the same seed.
    func testRandomRegularEachRound_HighDegree_NeverFails() throws {
        for (n, d) in [(16, 6), (16, 8), (12, 7), (30, 10)] {
            let schedule = try XCTUnwrap(
                TopologySchedule.parse("random-regular-each-round:\(d)", nodeCount: n, seed: 4))
            for t in 0..<300 {
                let topology = schedule.topology(atRound: t)
                XCTAssertTrue(topology.graph.isConnected, "n \(n) d \(d) round \(t)")
                XCTAssertTrue((0..<n).allSatisfy { topology.graph.degree(of: $0) == d }, "n \(n) d \(d) round \(t)")
                XCTAssertTrue(topology.isDoublyStochastic)
            }
            XCTAssertEqual(schedule.topology(atRound: 17), schedule.topology(atRound: 17))
            XCTAssertNotEqual(
                schedule.topology(atRound: 17).graph, schedule.topology(atRound: 18).graph, "random per round")
        }
        XCTAssertThrowsError(try TopologySchedule.parse("random-regular-each-round:1", nodeCount: 6, seed: 1))
    }
}
