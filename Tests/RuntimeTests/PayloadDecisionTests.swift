import Transport
import XCTest

/// The coordinator's choice of how models travel, from what every process found of /dev/shm:
/// shared memory only when all share one with room for every segment; otherwise `auto` falls
/// back to ZeroMQ frames saying why, and an explicit `shared-memory` is refused with that reason.
final class PayloadDecisionTests: XCTestCase {
    private let plan = SharedPayloadPlan(slotCount: 20, modelSize: 269_322)
    private let here = SharedMemoryReport(domain: "boot:41:1", availableBytes: 8 << 30, problem: nil)

    private func decide(
        _ mode: PayloadMode, coordinator: SharedMemoryReport? = nil, workers: [SharedMemoryReport?]? = nil
    ) -> Result<PayloadDecision, PayloadDecisionError> {
        PayloadDecision.decide(
            requested: mode, coordinator: coordinator ?? here, workers: workers ?? [here, here, here], plan: plan,
            segmentBytes: plan.segmentBytes)
    }

    private func reason(_ result: Result<PayloadDecision, PayloadDecisionError>) -> String {
        switch result {
        case .success(let decision): decision.reason ?? ""
        case .failure(let error): error.description
        }
    }

    func testOneHostWithRoom_UsesSharedMemory_WithThePlan() throws {
        for mode in [PayloadMode.auto, .sharedMemory] {
            let decision = try decide(mode).get()
            XCTAssertEqual(decision.used, .sharedMemory)
            XCTAssertEqual(decision.plan, plan)
            XCTAssertNil(decision.reason)
        }
        let frames = try decide(.zeromq).get()
        XCTAssertEqual(frames.used, .zeromq)
        XCTAssertNil(frames.plan)
    }

    func testEachObstacle_AutoFallsBackSayingWhy_SharedMemoryIsRefused() throws {
        let missing = SharedMemoryReport(domain: nil, availableBytes: 0, problem: "/dev/shm does not exist")
        let readOnly = SharedMemoryReport(domain: nil, availableBytes: 1 << 30, problem: "/dev/shm is read-only")
        let elsewhere = SharedMemoryReport(domain: "other-boot:41:1", availableBytes: 8 << 30, problem: nil)
        let small = SharedMemoryReport(domain: here.domain, availableBytes: 3 * plan.segmentBytes, problem: nil)
        let cases: [(SharedMemoryReport?, [SharedMemoryReport?]?, String)] = [
            (missing, nil, "the coordinator's host has no usable /dev/shm (/dev/shm does not exist)"),
            (nil, [here, readOnly, here], "worker 1 has no usable /dev/shm (/dev/shm is read-only)"),
            (nil, [here, here, elsewhere], "worker 2 is on another host than the coordinator"),
            (nil, [nil, here, here], "worker 0 did not report its shared memory"),
            (small, nil, "the run's 4 segments need"),
        ]
        for (coordinator, workers, expected) in cases {
            let fallback = decide(.auto, coordinator: coordinator, workers: workers)
            let decision = try fallback.get()
            XCTAssertEqual(decision.used, .zeromq, expected)
            XCTAssertNil(decision.plan)
            XCTAssertTrue(reason(fallback).contains(expected), "\(reason(fallback)) lacks \(expected)")
            let refused = decide(.sharedMemory, coordinator: coordinator, workers: workers)
            guard case .failure = refused else { return XCTFail("shared-memory granted despite: \(expected)") }
            XCTAssertTrue(reason(refused).hasPrefix("--payloads shared-memory: "), reason(refused))
            XCTAssertTrue(reason(refused).contains(expected), reason(refused))
        }
    }

    /// The slot count follows the flow-control window and the publications per round.
    func testSlotCount_FollowsTheWindow() {
        XCTAssertEqual(SharedPayloadPlan.slotCount(maxRoundsAhead: 8), 20)
        XCTAssertEqual(SharedPayloadPlan.slotCount(maxRoundsAhead: 8, publishesPerRound: 3), 29)
        XCTAssertEqual(SharedPayloadPlan.slotCount(maxRoundsAhead: 1), 6)
    }
}
