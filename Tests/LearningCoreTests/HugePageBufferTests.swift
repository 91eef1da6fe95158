import LearningCore
import XCTest

/// `HugePageBuffer`: every value of its capacity is writable and keeps what was written; from
/// 2 MiB on it starts on a 2 MiB boundary (what the kernel's huge pages need), below that it is
/// an ordinary allocation.
final class HugePageBufferTests: XCTestCase {
    func testBuffers_HoldTheirWholeCapacity_AndLargeOnesAreHugePageAligned() {
        let floatsPerHugePage = HugePageBuffer.hugePageBytes / MemoryLayout<Float>.stride
        for capacity in [0, 1, 1_000, floatsPerHugePage - 1, floatsPerHugePage, 3 * floatsPerHugePage + 17] {
            let buffer = HugePageBuffer(capacity: capacity)
            XCTAssertEqual(buffer.capacity, capacity)
            XCTAssertEqual(Int(bitPattern: buffer.pointer) % 64, 0, "capacity \(capacity): not 64-byte aligned")
            if capacity >= floatsPerHugePage {
                XCTAssertEqual(
                    Int(bitPattern: buffer.pointer) % HugePageBuffer.hugePageBytes, 0,
                    "capacity \(capacity): not on a 2 MiB boundary")
            }
            for i in 0..<capacity { buffer.pointer[i] = Float(i % 1_000_003) }
            XCTAssertFalse((0..<capacity).contains { buffer.pointer[$0] != Float($0 % 1_000_003) }, "\(capacity)")
        }
    }
}

/// `HugePageBuffer.advise`: advice on any region (empty, smaller than a huge page, unaligned,
/// several huge pages) leaves its memory as it was, readable and writable throughout.
final class HugePageAdviceTests: XCTestCase {
    func testAdvice_KeepsEveryRegionUsable() {
        let hugePage = HugePageBuffer.hugePageBytes
        for (count, offset) in [(0, 0), (100, 3), (hugePage - 1, 1), (hugePage + 4_097, 5), (3 * hugePage + 11, 4_095)]
        {
            let raw = UnsafeMutableRawPointer.allocate(byteCount: count + offset + 1, alignment: 4_096)
            defer { raw.deallocate() }
            let region = UnsafeMutableRawBufferPointer(start: raw + offset, count: count)
            for i in 0..<count { region[i] = UInt8(truncatingIfNeeded: i &* 7) }
            HugePageBuffer.advise(region)
            XCTAssertFalse((0..<count).contains { region[$0] != UInt8(truncatingIfNeeded: $0 &* 7) }, "\(count)")
            for i in 0..<count { region[i] = UInt8(truncatingIfNeeded: i &* 13) }
            XCTAssertFalse((0..<count).contains { region[$0] != UInt8(truncatingIfNeeded: $0 &* 13) }, "\(count)")
        }
    }
}
