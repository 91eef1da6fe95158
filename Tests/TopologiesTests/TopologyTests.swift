import Foundation
import Topologies
import XCTest
import _TestSupport

final class TopologyTests: XCTestCase {
    func testRing_MetropolisHastingsIsOneThirdAndDoublyStochastic() throws {
        let ring = try Topology.ring(nodeCount: 8)
        XCTAssertEqual(ring.edgeCount, 8)
        XCTAssertEqual(ring.neighbors[0], [1, 7])
        for row in ring.mixing { for entry in row { XCTAssertEqual(entry.weight, 1.0 / 3, accuracy: 1e-15) } }
        XCTAssertLessThan(ring.stochasticityError, 1e-12)
    }

    func testSmallRings() throws {
        XCTAssertEqual(try Topology.ring(nodeCount: 1).mixing, [[MixingEntry(node: 0, weight: 1)]])
        let two = try Topology.ring(nodeCount: 2)
        XCTAssertEqual(two.edgeCount, 1)
        XCTAssertEqual(two.mixing[0].map(\.weight), [0.5, 0.5])
    }

    func testComplete_IsExactAverage() throws {
        withEvery("n", in: [1, 2, 5, 16]) { n in
            let complete = try! Topology.complete(nodeCount: n)
            XCTAssertEqual(complete.edgeCount, n * (n - 1) / 2)
            for value in complete.denseMixingMatrix { XCTAssertEqual(value, 1 / Double(n), accuracy: 1e-15) }
        }
    }

    func testMetropolisHastings_IrregularGraphIsStillDoublyStochastic() throws {
        let star = try TopologyFile.parse("5\n0 1\n0 2\n0 3\n0 4\n", name: "star")
        XCTAssertLessThan(star.stochasticityError, 1e-12)
        XCTAssertEqual(star.mixing[1].first { $0.node == 0 }!.weight, 1.0 / 5, accuracy: 1e-15)
        XCTAssertEqual(star.mixing[1].first { $0.node == 1 }!.weight, 4.0 / 5, accuracy: 1e-15)
        let dense = star.denseMixingMatrix
        for i in 0..<5 { for j in 0..<5 { XCTAssertEqual(dense[i * 5 + j], dense[j * 5 + i]) } }
    }

    func testParse_CommentsWeightsAndRoundTrip() throws {
        let text = """
            # a path with explicit weights
            3
            0 1 0.25   # left
            1 2 0.5
            """
        let path = try TopologyFile.parse(text, name: "path.edges")
        XCTAssertEqual(
            path.mixing[1],
            [MixingEntry(node: 0, weight: 0.25), MixingEntry(node: 1, weight: 0.25), MixingEntry(node: 2, weight: 0.5)])
        XCTAssertEqual(path.mixing[0].first { $0.node == 0 }!.weight, 0.75)
        let again = try TopologyFile.parse(TopologyFile.format(path), name: "again")
        XCTAssertEqual(again.mixing, path.mixing)
        XCTAssertEqual(again.neighbors, path.neighbors)
    }

    func testParse_ShippedFiles() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let folder = root.appendingPathComponent("topologies")
        let files = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter {
            $0.hasSuffix(".edges") || $0.hasSuffix(".schedule")
        }
        XCTAssertGreaterThanOrEqual(files.count, 27)
        for file in files {
            let text = try String(contentsOf: folder.appendingPathComponent(file), encoding: .utf8)
            let schedule = try TopologyFile.parseSchedule(text, name: file)
            for t in 0..<(schedule.period ?? 1) {
                XCTAssertLessThan(schedule.topology(atRound: t).stochasticityError, 1e-12, file)
            }
            let expected = Int(file.split(separator: "-").last!.split(separator: ".").first!)!
            XCTAssertEqual(schedule.nodeCount, expected, file)
        }
    }

    func testParse_Errors_NameFileAndLine() {
        let cases: [(String, String)] = [
            ("", "empty topology file"),
            ("x\n", "path.edges:1: the first line must be the node count"),
            ("3\n0 1\n1 5\n", "path.edges:3: node id out of range"),
            ("3\n0 1\n1 1\n", "path.edges:3: self-loop"),
            ("3\n0 1\n1 0\n", "path.edges:3: duplicate edge 1 0 (first given on line 2)"),
            ("3\n0 1 -0.1\n", "path.edges:2: weight '-0.1'"),
            ("3\n0 1 nan\n", "path.edges:2: weight 'nan'"),
            ("3\n0 1 0.5\n1 2\n", "path.edges:3: this edge has no weight"),
            ("3\n0 1 0.7\n1 2 0.7\n", "node 1: its edge weights sum to 1.4"),
            ("4\n0 1\n2 3\n", "disconnected"),
            ("3\n0 1 2\n", "weights sum"),
            ("3\n0 a\n", "path.edges:2: node ids must be integers"),
            ("3\n0 1 2 3\n", "path.edges:2: expected 'u v' or 'u v w'"),
        ]
        for (text, expected) in cases {
            XCTAssertThrowsError(try TopologyFile.parse(text, name: "path.edges"), text) { error in
                XCTAssertTrue("\(error)".contains(expected), "for \(text.debugDescription): \(error)")
            }
        }
    }

    func testHash_IsStableAndSensitive() throws {
        XCTAssertEqual(try Topology.ring(nodeCount: 8).hash, try Topology.ring(nodeCount: 8).hash)
        XCTAssertNotEqual(try Topology.ring(nodeCount: 8).hash, try Topology.complete(nodeCount: 8).hash)
    }
}
