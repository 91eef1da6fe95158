import Datasets
import Foundation
import XCTest
import _TestSupport

final class IDXTests: XCTestCase {
    func testParseHeader_ReadsDimensions() throws {
        let header = try IDXHeader.parse(TinyIDX.images(count: 5, seed: 1), name: "x")
        XCTAssertEqual(header.dimensions, [5, 8, 8])
        XCTAssertEqual(header.itemLength, 64)
        XCTAssertEqual(header.headerLength, 16)
    }

    func testParseHeader_WrongMagic_Fails() {
        var bytes = TinyIDX.images(count: 5, seed: 1)
        bytes[0] = 0x1f
        XCTAssertThrowsError(try IDXHeader.parse(bytes, name: "images.idx")) { error in
            XCTAssertTrue("\(error)".contains("images.idx"), "\(error)")
            XCTAssertTrue("\(error)".contains("magic"), "\(error)")
        }
        var wrongType = TinyIDX.images(count: 5, seed: 1)
        wrongType[2] = 0x0D
        XCTAssertThrowsError(try IDXHeader.parse(wrongType, name: "f")) {
            XCTAssertTrue("\($0)".contains("unsigned byte"))
        }
    }

    func testDecodeLabels_TruncatedAndTrailing_Fail() {
        let labels = TinyIDX.labels(count: 20, seed: 2)
        XCTAssertEqual(try IDXHeader.decodeLabels(labels, name: "l").count, 20)
        XCTAssertThrowsError(try IDXHeader.decodeLabels(Array(labels.dropLast(3)), name: "labels.idx")) { error in
            XCTAssertTrue("\(error)".contains("labels.idx: truncated"), "\(error)")
        }
        XCTAssertThrowsError(try IDXHeader.decodeLabels(labels + [1], name: "l")) {
            XCTAssertTrue("\($0)".contains("trailing"))
        }
        XCTAssertThrowsError(try IDXHeader.decodeLabels(TinyIDX.images(count: 2, seed: 1), name: "l")) {
            XCTAssertTrue("\($0)".contains("rank 1"))
        }
        var badLabel = labels
        badLabel[10] = 42
        XCTAssertThrowsError(try IDXHeader.decodeLabels(badLabel, name: "l")) {
            XCTAssertTrue("\($0)".contains("label 42"))
        }
    }

    func testRowSelector_KeepsExactlyTheSelectedRows_InAnyChunking() throws {
        let bytes = TinyIDX.images(count: 50, seed: 3)
        let selection = [0, 7, 8, 31, 49]
        for chunk in [1, 7, 64, 1000] {
            var selector = IDXRowSelector(name: "f", selection: selection)
            try bytes.withUnsafeBufferPointer { all in
                var offset = 0
                while offset < all.count {
                    let end = min(offset + chunk, all.count)
                    try selector.consume(UnsafeBufferPointer(rebasing: all[offset..<end]))
                    offset = end
                }
            }
            try selector.finish()
            let expected = selection.flatMap { Array(bytes[(16 + $0 * 64)..<(16 + ($0 + 1) * 64)]) }
            XCTAssertEqual(selector.selected, expected, "chunk \(chunk)")
        }
    }

    func testRowSelector_TruncatedFile_Fails() throws {
        let bytes = Array(TinyIDX.images(count: 10, seed: 3).dropLast(10))
        var selector = IDXRowSelector(name: "images.idx", selection: [1])
        try bytes.withUnsafeBufferPointer { try selector.consume($0) }
        XCTAssertThrowsError(try selector.finish()) { error in
            XCTAssertTrue("\(error)".contains("images.idx: truncated"), "\(error)")
        }
    }

    func testGzip_RoundTripsThroughSystemGzip() throws {
        let bytes = TinyIDX.images(count: 30, seed: 4)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("dsgd-gzip-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("x")
        try Data(bytes).write(to: file)
        let gzip = Process()
        gzip.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        gzip.arguments = ["gzip", "-9", file.path]
        try gzip.run()
        gzip.waitUntilExit()
        let compressed = [UInt8](try Data(contentsOf: directory.appendingPathComponent("x.gz")))
        XCTAssertTrue(GzipInflater.isGzip(compressed))
        XCTAssertEqual(try GzipInflater.decompress(compressed, name: "x.gz"), bytes)
        XCTAssertThrowsError(try GzipInflater.decompress(Array(compressed.dropLast(20)), name: "x.gz")) {
            XCTAssertTrue("\($0)".contains("x.gz"))
        }
        var corrupt = compressed
        corrupt[20] ^= 0xFF
        corrupt[21] ^= 0xFF
        XCTAssertThrowsError(try GzipInflater.decompress(corrupt, name: "x.gz"))
    }

    /// Headers whose dimensions multiply past Int (four of 2³² − 1) or past the stated cap used to
    /// trap or reserve absurd memory: they are errors naming the file and the dimensions.
    func testHugeOrOverflowingDimensions_AreErrorsNotTraps() {
        let huge: [UInt8] = [0, 0, 8, 4] + [UInt8](repeating: 0xFF, count: 16)
        XCTAssertThrowsError(try IDXHeader.parse(huge, name: "images.idx")) {
            XCTAssertTrue("\($0)".hasPrefix("images.idx: IDX dimensions"), "\($0)")
            XCTAssertTrue("\($0)".contains("the cap dsgd reads"), "\($0)")
        }
        // 2³⁰ items of 2²⁵ bytes: under Int's range but over both caps.
        let wide: [UInt8] = [0, 0, 8, 2, 0x40, 0, 0, 0, 0x02, 0, 0, 0]
        XCTAssertThrowsError(try IDXHeader.parse(wide, name: "wide.idx"))
        let long: [UInt8] = [0, 0, 8, 2, 0, 0, 0, 1, 0x02, 0, 0, 0]
        XCTAssertThrowsError(try IDXHeader.parse(long, name: "long.idx")) {
            XCTAssertTrue("\($0)".contains("exceed the cap"), "\($0)")
        }
        // A selector fed such a header errors before reserving anything.
        var selector = IDXRowSelector(name: "s.idx", selection: [0])
        XCTAssertThrowsError(try huge.withUnsafeBufferPointer { try selector.consume($0) })
    }

    /// A gzip stream that expands past the cap is an error naming the file (a 4 MB run of zeros
    /// compresses to about 4 KB).
    func testGzipOutput_IsCapped() throws {
        let zeros = [UInt8](repeating: 0, count: 4 << 20)
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("dsgd-bomb-\(UUID())")
        defer { try? FileManager.default.removeItem(at: url) }
        try Data(zeros).write(to: url)
        let gzip = Process()
        gzip.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        gzip.arguments = ["gzip", "-f", url.path]
        try gzip.run()
        gzip.waitUntilExit()
        let compressed = [UInt8](try Data(contentsOf: URL(fileURLWithPath: url.path + ".gz")))
        defer { try? FileManager.default.removeItem(atPath: url.path + ".gz") }
        XCTAssertLessThan(compressed.count, 64 << 10)
        XCTAssertEqual(try GzipInflater.decompress(compressed, name: "ok.gz").count, zeros.count)
        XCTAssertThrowsError(try GzipInflater.decompress(compressed, name: "bomb.gz", maximumOutput: 1 << 20)) {
            XCTAssertTrue("\($0)".hasPrefix("bomb.gz: decompresses to more than 1048576 bytes"), "\($0)")
        }
    }
}
