import Foundation
import SharedMemory
import XCTest

/// The shared-memory slot ring: published values read in place, the header checked, a rewritten
/// slot detected (also when it happens during a read), nothing left in /dev/shm.
final class SharedSegmentTests: XCTestCase {
    /// A run id no other test or run uses.
    func freshRunID() -> UInt64 { UInt64.random(in: 1...UInt64.max) }

    func shmPath(_ segment: String) -> String { "/dev/shm" + segment }

    func testPublishedValues_AreReadInPlace_ByAReader() throws {
        let runID = freshRunID()
        let owner = try SharedSegment.create(runID: runID, rank: 3, slotCount: 4, slotCapacity: 1_000)
        XCTAssertTrue(owner.name.contains(String(runID, radix: 16)) && owner.name.hasSuffix("rank3"), owner.name)
        var status = stat()
        XCTAssertEqual(stat(shmPath(owner.name), &status), 0)
        XCTAssertEqual(status.st_mode & 0o777, 0o600)
        let reader = try SharedSegment.open(runID: runID, rank: 3, slotCount: 4, slotCapacity: 1_000)
        for round in Int64(0)..<6 {
            let values = (0..<(900 + Int(round))).map { Float($0) * 0.5 + Float(round) }
            let descriptor = values.withUnsafeBufferPointer { owner.publish($0, round: round) }
            XCTAssertEqual(descriptor.slot, Int(round % 4))
            XCTAssertEqual(try reader.read(descriptor) { Array($0) }, values)
        }
    }

    /// Told which rounds no reader uses any more, the owner writes the lowest-numbered released
    /// (or never used) slot, so a run touches only as many slots as it has models in use, and
    /// never a slot of a round not released while another is free; with none free (flow control
    /// should make that impossible) it takes the slot written longest ago, and its reader finds
    /// out. Payloads for the coordinator alone fill from the other end. Told nothing, it rotates
    /// through all of them.
    func testReleasedSlots_AreReusedLowestFirst_AndUnreleasedOnesOnlyWhenNoneIsFree() throws {
        let runID = freshRunID()
        let owner = try SharedSegment.create(runID: runID, rank: 2, slotCount: 6, slotCapacity: 4)
        let reader = try SharedSegment.open(runID: runID, rank: 2, slotCount: 6, slotCapacity: 4)
        let values: [Float] = [1, 2, 3, 4]
        func publish(_ round: Int64) -> SlotDescriptor {
            values.withUnsafeBufferPointer { owner.publish($0, round: round) }
        }
        XCTAssertEqual([publish(1), publish(1), publish(2), publish(2)].map(\.slot), [0, 1, 2, 3])
        owner.release(through: 1)
        let third = [publish(3), publish(3), publish(3)]
        XCTAssertEqual(third.map(\.slot), [0, 1, 4])
        owner.release(through: 0)  // an older acknowledgement arriving late releases nothing more
        XCTAssertEqual(owner.releasedThrough, 1)
        XCTAssertEqual(publish(3).slot, 5)
        owner.release(through: 2)
        XCTAssertEqual([publish(4), publish(4)].map(\.slot), [2, 3])
        XCTAssertEqual(try reader.read(third[0]) { Array($0) }, values)
        XCTAssertEqual(publish(4).slot, 0, "none free: the slot written longest ago")
        XCTAssertThrowsError(try reader.read(third[0]) { _ in () }) { error in
            XCTAssertTrue("\(error)".contains("round 3"), "\(error)")
        }

        // Payloads for the coordinator alone fill from the last slot, so the workers that read the
        // others never touch their pages.
        let split = try SharedSegment.create(runID: runID, rank: 3, slotCount: 5, slotCapacity: 4)
        func publish(_ round: Int64, last: Bool) -> Int {
            values.withUnsafeBufferPointer { split.publish($0, round: round, fromLastSlot: last).slot }
        }
        XCTAssertEqual(
            [publish(1, last: false), publish(1, last: true), publish(2, last: false), publish(2, last: true)],
            [0, 4, 1, 3])
        split.release(through: 1)
        XCTAssertEqual([publish(3, last: true), publish(3, last: false), publish(3, last: false)], [4, 0, 2])

        let coordinator = try SharedSegment.create(runID: runID, rank: -1, slotCount: 3, slotCapacity: 4)
        let slots = (1...7).map { round in
            values.withUnsafeBufferPointer { coordinator.publish($0, round: Int64(round)).slot }
        }
        XCTAssertEqual(slots, [0, 1, 2, 0, 1, 2, 0])
    }

    func testRewrittenSlot_IsDetected_NamingBothRounds() throws {
        let runID = freshRunID()
        let owner = try SharedSegment.create(runID: runID, rank: 0, slotCount: 3, slotCapacity: 10)
        let reader = try SharedSegment.open(runID: runID, rank: 0, slotCount: 3, slotCapacity: 10)
        let values = [Float](repeating: 1, count: 10)
        let old = values.withUnsafeBufferPointer { owner.publish($0, round: 4) }
        // A reader that lagged a whole ring: the third model after it (round 7) reused its slot.
        for round in Int64(5)...7 { _ = values.withUnsafeBufferPointer { owner.publish($0, round: round) } }
        XCTAssertThrowsError(try reader.read(old) { _ in () }) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("round 4") && text.contains("round 7"), text)
        }
        // Forced during a read: the writer rewrites the slot while the reader holds it.
        let current = values.withUnsafeBufferPointer { owner.publish($0, round: 9) }
        XCTAssertThrowsError(
            try reader.read(current) { _ in
                for round in Int64(10)...12 { _ = values.withUnsafeBufferPointer { owner.publish($0, round: round) } }
            }
        ) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("while reading a model of round 9") && text.contains("round 12"), text)
        }
    }

    func testWrongShapeOrRun_IsRefused_AndTwoOwnersCannotExist() throws {
        let runID = freshRunID()
        let owner = try SharedSegment.create(runID: runID, rank: 1, slotCount: 2, slotCapacity: 64)
        XCTAssertThrowsError(try SharedSegment.open(runID: runID, rank: 1, slotCount: 2, slotCapacity: 65)) { error in
            XCTAssertTrue("\(error)".contains("bytes"), "\(error)")
        }
        XCTAssertThrowsError(try SharedSegment.open(runID: runID ^ 1, rank: 1, slotCount: 2, slotCapacity: 64))
        XCTAssertThrowsError(try SharedSegment.create(runID: runID, rank: 1, slotCount: 2, slotCapacity: 64))
        _ = owner
    }

    func testOwnerRelease_LeavesNothingInDevShm_EvenWithReadersMapped() throws {
        let runID = freshRunID()
        var owner: SharedSegment? = try SharedSegment.create(runID: runID, rank: 5, slotCount: 2, slotCapacity: 8)
        let name = owner!.name
        let descriptor = [Float](repeating: 2, count: 8).withUnsafeBufferPointer { owner!.publish($0, round: 0) }
        let reader = try SharedSegment.open(runID: runID, rank: 5, slotCount: 2, slotCapacity: 8)
        owner = nil
        XCTAssertFalse(FileManager.default.fileExists(atPath: shmPath(name)))
        // The reader's mapping stays valid after the unlink.
        XCTAssertEqual(try reader.read(descriptor) { Array($0) }, [Float](repeating: 2, count: 8))
    }

    func testTooLargeForDevShm_FailsAtCreation_LeavingNothing() throws {
        let runID = freshRunID()
        // 64 slots of 2^30 floats: 256 GiB, more than any /dev/shm here.
        XCTAssertThrowsError(try SharedSegment.create(runID: runID, rank: 0, slotCount: 64, slotCapacity: 1 << 30)) {
            error in
            XCTAssertTrue("\(error)".contains("cannot"), "\(error)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: shmPath(SharedSegment.name(runID: runID, rank: 0))))
    }

    /// A segment whose owner died (its header names a process that no longer exists) is removed by
    /// the sweep; one of a live process stays.
    func testStaleSegments_OfDeadOwners_AreRemoved() throws {
        let runID = freshRunID()
        let live = try SharedSegment.create(runID: runID, rank: 0, slotCount: 1, slotCapacity: 4)
        let orphan = try SharedSegment.create(runID: runID, rank: 1, slotCount: 1, slotCapacity: 4)
        // A process that has exited: its pid names no process (until reused, which the sweep
        // would only postpone).
        let child = Process()
        child.executableURL = URL(fileURLWithPath: "/bin/true")
        try child.run()
        child.waitUntilExit()
        let descriptor = shm_open(orphan.name, O_RDWR, 0)
        XCTAssertGreaterThanOrEqual(descriptor, 0)
        var dead = UInt64(child.processIdentifier)
        XCTAssertEqual(pwrite(descriptor, &dead, 8, 5 * 8), 8)
        close(descriptor)
        let removed = SharedSegment.removeStale()
        XCTAssertTrue(removed.contains(String(orphan.name.dropFirst())), "\(removed)")
        XCTAssertFalse(removed.contains(String(live.name.dropFirst())))
        XCTAssertEqual(access(shmPath(live.name), F_OK), 0)
        XCTAssertNotEqual(access(shmPath(orphan.name), F_OK), 0)
        withExtendedLifetime(live) {}
    }
}
