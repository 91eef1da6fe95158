import Foundation
import Runtime
import Topologies
import Transport
import XCTest

/// The assignments are encoded with their shared part once (O(n) for n workers, not n encodings
/// of an O(n) topology); each body must still decode as that worker's whole `Assignment`.
final class AssignmentBodyTests: XCTestCase {
    func testSplicedBodies_DecodeAsEachWorkersAssignment() throws {
        let configuration = smallConfiguration(workers: 5)
        let endpoints = (0..<5).map { "tcp://127.0.0.1:\(4000 + $0)" }
        let plan = SharedPayloadPlan(slotCount: 4, modelSize: 10)
        let bodies = Assignment.encodedBodies(
            runID: 77, configuration: configuration, workerEndpoints: endpoints, nonces: [9, 8, 7, 6, 5],
            sharedPayloads: plan, resume: { $0 == 3 ? WorkerResume(round: 12, state: [1, 2, 3]) : nil })
        XCTAssertEqual(bodies.count, 5)
        for (rank, body) in bodies.enumerated() {
            let decoded = try JSONDecoder().decode(Assignment.self, from: Data(body))
            XCTAssertEqual(decoded.rank, rank)
            XCTAssertEqual(decoded.runID, 77)
            XCTAssertEqual(decoded.nonce, UInt64(9 - rank))
            XCTAssertEqual(decoded.workerEndpoints, endpoints)
            XCTAssertEqual(decoded.configuration, configuration)
            XCTAssertEqual(decoded.sharedPayloads, plan)
            XCTAssertEqual(decoded.resume?.round, rank == 3 ? 12 : nil)
            XCTAssertEqual(decoded.resume.map { Array($0.state) }, rank == 3 ? [1, 2, 3] : nil)
        }
    }
}
