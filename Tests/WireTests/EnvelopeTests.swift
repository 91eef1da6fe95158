import Wire
import XCTest

final class EnvelopeTests: XCTestCase {
    func testFirstFrame_RoundTrips() throws {
        let payload = FloatPayload(copying: [1, 2, 3])
        let envelope = Envelope(
            header: MessageHeader(kind: .parameters, runID: 0xABCD_EF01_2345_6789, round: 17, sender: 5), body: [9, 8],
            payload: payload)
        let (header, body) = try envelope.firstFrame.withUnsafeBytes { try Envelope.decodeFirstFrame($0) }
        XCTAssertEqual(header, envelope.header)
        XCTAssertEqual(header.payloadCount, 3)
        XCTAssertEqual(body, [9, 8])
    }

    func testDecode_RejectsMalformedFrames() {
        let good = Envelope(header: MessageHeader(kind: .start, runID: 1, sender: -1)).firstFrame
        func decode(_ bytes: [UInt8]) throws { _ = try bytes.withUnsafeBytes { try Envelope.decodeFirstFrame($0) } }
        XCTAssertThrowsError(try decode(Array(good.prefix(10)))) { XCTAssertTrue("\($0)".contains("shorter")) }
        var magic = good
        magic[0] = 0
        XCTAssertThrowsError(try decode(magic)) { XCTAssertTrue("\($0)".contains("magic")) }
        var kind = good
        kind[6] = 99
        XCTAssertThrowsError(try decode(kind)) { XCTAssertTrue("\($0)".contains("unknown message kind 99")) }
        var version = good
        version[4] = 7
        XCTAssertThrowsError(try decode(version)) {
            XCTAssertEqual($0 as? WireError, .versionMismatch(received: 7, expected: MessageHeader.currentVersion))
        }
    }

    func testPayloadFrames_SplitAtFourMebibytes() {
        XCTAssertEqual(Envelope.payloadFrameRanges(count: 10), [0..<10])
        let perFrame = (4 << 20) / 4
        XCTAssertEqual(
            Envelope.payloadFrameRanges(count: perFrame * 2 + 1),
            [0..<perFrame, perFrame..<(2 * perFrame), (2 * perFrame)..<(2 * perFrame + 1)])
    }

    func testPayload_FiniteCheck() {
        XCTAssertTrue(FloatPayload(copying: [1, -2]).isFinite)
        XCTAssertFalse(FloatPayload(copying: [1, .nan]).isFinite)
        XCTAssertFalse(FloatPayload(copying: [.infinity]).isFinite)
        // Every edge of the exponent field, at positions in and across the 4,096-value blocks,
        // against Float.isFinite value by value.
        let finite: [Float] = [
            .greatestFiniteMagnitude, -.greatestFiniteMagnitude, .leastNonzeroMagnitude, .leastNormalMagnitude, -0.0, 0,
        ]
        let nonFinite: [Float] = [
            .infinity, -.infinity, .nan, -.nan, .signalingNaN, Float(bitPattern: 0x7F80_0001),
            Float(bitPattern: 0xFFFF_FFFF),
        ]
        for count in [1, 4_095, 4_096, 4_097, 10_000] {
            for position in Set([0, count / 2, count - 1]) {
                for value in finite + nonFinite {
                    var values = (0..<count).map { Float($0 % 97) - 48.5 }
                    values[position] = value
                    XCTAssertEqual(
                        FloatPayload(copying: values).isFinite, values.allSatisfy(\.isFinite),
                        "\(value.bitPattern) at \(position) of \(count)")
                }
            }
        }
    }
}

final class SparsePayloadTests: XCTestCase {
    /// Encode then decode gives the dense values back bit for bit; the sparse form is used only
    /// when it is smaller.
    func testRoundTrip_AndWhenItIsUsed() throws {
        let values: [Float] = [0, 3, 0, 0, -0.0, 0, 0, 0, 0, 1.5, 0]
        let payload = FloatPayload(copying: values)
        XCTAssertTrue(SparsePayload.isWorthwhile(payload))
        XCTAssertEqual(payload.wireSlotCount, 1 + 2 * 3)
        let sparse = SparsePayload.encode(payload)
        let dense = try sparse.buffer.withMemoryRebound(to: Float.self) { try SparsePayload.decode($0) }
        XCTAssertEqual(dense.array.map(\.bitPattern), values.map(\.bitPattern))
        XCTAssertFalse(SparsePayload.isWorthwhile(FloatPayload(copying: [1, 0, 2, 0])))
    }

    func testMalformedSparsePayloads_AreRejected() {
        func slots(_ count: UInt32, _ indices: [UInt32], _ values: [Float]) -> [Float] {
            [Float(bitPattern: count)] + indices.map { Float(bitPattern: $0) } + values
        }
        for (bad, reason) in [
            (slots(10, [3, 2], [1, 1]), "out of order"),
            (slots(10, [3, 10], [1, 1]), "out of range"),
            (slots(1, [0, 1], [1, 1]), "values for a length"),
            (slots(10, [3], [1]) + [0], "expected 1 + 2"),
        ] {
            XCTAssertThrowsError(try bad.withUnsafeBufferPointer { try SparsePayload.decode($0) }) {
                XCTAssertTrue("\($0)".contains(reason), "\($0)")
            }
        }
    }
}
