import LearningCore
import Topologies
import XCTest

final class TopologyFileTests: XCTestCase {
    /// One malformed file per rule, each with its own message (file:line where a line is at fault).
    func testMalformedFiles_EachGiveTheirMessage() {
        let cases: [(String, String)] = [
            ("4\n0 1\n1 2\n2 9\n", "t.edges:4: node id out of range"),
            ("4\n0 1\n0 1\n", "t.edges:3: duplicate edge 0 1 (first given on line 2)"),
            ("directed\n3\n0 1\n0 1\n", "t.edges:4: duplicate edge 0 1"),
            ("3\n2 2\n", "t.edges:2: self-loop 2 2"),
            ("3\n0 1 -1\n1 2 0.5\n", "t.edges:2: weight '-1' must be a finite non-negative number"),
            ("3\n0 1 inf\n1 2 0.5\n", "t.edges:2: weight 'inf'"),
            ("matrix\n0.5 0.5\n0.5 0.4\n", "t.edges:3: row 1 of W sums to 0.9"),
            ("matrix\n0.5 0.3 0.2\n0.2 0.6 0.2\n0.3 0.1 0.6\n", "must be symmetric"),
            ("matrix\n0.5 0.5\n0.5\n", "t.edges:3: this row has 1 entries"),
            ("matrix\n0.5 0.5 0\n0.5 0.5 0\n", "W must be square"),
            ("4\n0 1\n2 3\n", "disconnected"),
            ("directed\n3\n0 1\n1 2\n", "disconnected"),
            ("3\n0 1 0.6\n1 2 0.6\n", "node 1: its edge weights sum to 1.2"),
            ("3\nweights nonsense\n0 1\n", "t.edges:2: expected 'weights RULE'"),
            ("3\n0 1\ndirected\n", "t.edges:3: 'directed' must come before"),
            ("3\nweights uniform\n0 1 0.5\n1 2 0.5\n", "explicit weights and a 'weights' rule conflict"),
            ("999999999\n", "t.edges:1: node count 999999999 exceeds"),
            ("-3\n", "t.edges:1: the first line must be the node count"),
            ("", "empty topology file"),
            (
                "directed\n3\n0 1\n1 2\n2 0\n0 2\nweights metropolis-hastings\n",
                "t.edges:7: expected 'weights RULE' before the edges"
            ),
        ]
        for (text, expected) in cases {
            XCTAssertThrowsError(try TopologyFile.parse(text, name: "t.edges"), text.debugDescription) { error in
                XCTAssertTrue("\(error)".contains(expected), "\(text.debugDescription): \(error)")
            }
        }
        XCTAssertNoThrow(try TopologyFile.parse("allow-disconnected\n4\n0 1\n2 3\n", name: "t"))
    }

    func testScheduleFiles() throws {
        let text = """
            schedule
            phase
            4
            0 1
            2 3
            allow-disconnected
            """
        XCTAssertThrowsError(try TopologyFile.parseSchedule(text, name: "s")) {
            XCTAssertTrue("\($0)".contains("s:6:"))
        }
        let good = "schedule\nphase\nallow-disconnected\n4\n0 1\n2 3\nphase\nallow-disconnected\n4\n0 2\n1 3\n"
        let schedule = try TopologyFile.parseSchedule(good, name: "s")
        XCTAssertEqual(schedule.period, 2)
        XCTAssertEqual(schedule.topology(atRound: 3).inNeighbors(of: 0), [2])
        XCTAssertEqual(
            ScheduleSpectrum(schedule).product.spectralGap, 1, accuracy: 1e-9, "two matchings average exactly")
        XCTAssertThrowsError(try TopologyFile.parseSchedule("schedule\n4\n0 1\n", name: "s")) {
            XCTAssertTrue("\($0)".contains("s:2: expected a 'phase' line"))
        }
        XCTAssertThrowsError(try TopologyFile.parseSchedule("schedule\nphase\n2\n0 1\nphase\n3\n0 1\n1 2\n", name: "s"))
        {
            XCTAssertTrue("\($0)".contains("phase 1 has 3 nodes but phase 0 has 2"))
        }
        XCTAssertThrowsError(try TopologyFile.parse(good, name: "s")) { XCTAssertTrue("\($0)".contains("schedule")) }
    }

    func testFormatThenParse_RoundTripsEveryGeneratorAndRule() throws {
        let graphs: [(GraphGenerator, WeightRule?)] = [
            (.ring, nil), (.star, .uniform), (.twoCliques, .maximumDegree), (.binaryTree, .sinkhorn),
            (.exponential, nil),
            (.exponential, .columnStochastic), (.wattsStrogatz(neighbors: 4, rewiring: 0.2), nil), (.solo, nil),
        ]
        for (generator, rule) in graphs {
            let topology = try Topology.generated(generator, nodeCount: 12, seed: 2, weights: rule)
            let text = TopologyFile.format(topology)
            let again = try TopologyFile.parse(text, name: topology.name)
            XCTAssertEqual(again.mixing, topology.mixing, "\(generator) \(String(describing: rule))")
            XCTAssertEqual(again.graph, topology.graph)
            XCTAssertEqual(TopologyFile.format(again), text)
        }
        // A directed push-sum topology: column-stochastic is the default rule for directed graphs.
        let graph = try Graph(nodeCount: 4, edges: [(0, 1), (1, 2), (2, 3), (3, 0), (0, 2)], directed: true)
        let pushSum = try Topology(name: "p", graph: graph, weights: .columnStochastic)
        let text = TopologyFile.format(pushSum)
        XCTAssertEqual(text, "directed\n4\n0 1\n0 2\n1 2\n2 3\n3 0\n")
        // Weights no rule reproduces are written explicitly, or as a matrix when not symmetric.
        let explicit = try TopologyFile.parse("3\n0 1 0.2\n1 2 0.3\n", name: "e")
        XCTAssertEqual(TopologyFile.format(explicit), "3\n0 1 0.2\n1 2 0.3\n")
        let matrix = try TopologyFile.parse("directed\nmatrix\n0.7 0.3\n0.1 0.9\n", name: "m")
        XCTAssertEqual(try TopologyFile.parse(TopologyFile.format(matrix), name: "m").mixing, matrix.mixing)
        XCTAssertEqual(try TopologyFile.parse(text, name: "p").mixing, pushSum.mixing)
        let schedule = TopologySchedule.onePeerExponential(nodeCount: 8)
        let scheduleText = TopologyFile.format(schedule)
        let parsed = try TopologyFile.parseSchedule(scheduleText, name: "one-peer")
        for t in 0..<6 { XCTAssertEqual(parsed.topology(atRound: t).mixing, schedule.topology(atRound: t).mixing) }
    }

    /// Thousands of random and mutated files: the parser returns or throws, never crashes or hangs.
    func testFuzz_RandomAndMutatedFiles() throws {
        let seeds = [
            TopologyFile.format(try Topology.generated(.ring, nodeCount: 8)),
            TopologyFile.format(try Topology.generated(.exponential, nodeCount: 8, weights: .columnStochastic)),
            "directed\nweights column-stochastic\n5\n0 1\n1 2\n2 3\n3 4\n4 0\n",
            "matrix\n0.5 0.5\n0.5 0.5\n",
            TopologyFile.format(TopologySchedule.onePeerExponential(nodeCount: 4)),
        ]
        let alphabet = Array("0123456789 .-#\nexyzmatrixdirectedweightsphaseschedule,\t".utf8)
        var generator = SplitMix64(seed: 2024)
        var accepted = 0
        let clock = ContinuousClock()
        let started = clock.now
        for iteration in 0..<4_000 {
            var bytes = Array(seeds[iteration % seeds.count].utf8)
            let mutations = 1 + Int(generator.next() % 6)
            for _ in 0..<mutations {
                let position = bytes.isEmpty ? 0 : Int(generator.next() % UInt64(bytes.count))
                switch generator.next() % 5 {
                case 0 where !bytes.isEmpty: bytes[position] = alphabet[Int(generator.next() % UInt64(alphabet.count))]
                case 1: bytes.insert(alphabet[Int(generator.next() % UInt64(alphabet.count))], at: position)
                case 2 where !bytes.isEmpty: bytes.remove(at: position)
                case 3:
                    let lines = bytes.split(separator: 0x0A, omittingEmptySubsequences: false)
                    let line = lines[Int(generator.next() % UInt64(lines.count))]
                    bytes.insert(contentsOf: Array(line) + [0x0A], at: position)
                default:
                    bytes = Array(
                        (0..<Int(generator.next() % 60)).map { _ in
                            alphabet[Int(generator.next() % UInt64(alphabet.count))]
                        })
                }
            }
            let text = String(decoding: bytes, as: UTF8.self)
            if (try? TopologyFile.parseSchedule(text, name: "fuzz")) != nil { accepted += 1 }
        }
        XCTAssertGreaterThan(accepted, 0, "some mutations stay valid")
        XCTAssertLessThan((clock.now - started) / .seconds(1), 60, "no input may make the parser hang")
    }
}
