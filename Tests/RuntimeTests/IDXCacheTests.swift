import Datasets
import Foundation
import XCTest
import _TestSupport

@testable import Runtime

/// The per-host cache of inflated IDX files: the same rows as inflating in the process, one entry
/// per source, rebuilt when the source changes or the entry is damaged, and never used from a
/// directory others could write.
final class IDXCacheTests: XCTestCase {
    var folder: URL!

    override func setUpWithError() throws {
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("dsgd-idxcache-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: folder) }

    /// A gzipped IDX image file of `count` 8×8 images.
    func gzippedImages(count: Int, seed: UInt64, name: String = "train-images-idx3-ubyte") throws -> String {
        let raw = folder.appendingPathComponent(name)
        try Data(TinyIDX.images(count: count, seed: seed)).write(to: raw)
        let gzip = Process()
        gzip.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        gzip.arguments = ["gzip", "-f", "-n", raw.path]
        try gzip.run()
        gzip.waitUntilExit()
        XCTAssertEqual(gzip.terminationStatus, 0)
        return raw.path + ".gz"
    }

    func cacheDirectory() throws -> String {
        let directory = folder.appendingPathComponent("cache").path
        try FileManager.default.createDirectory(
            atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        return directory
    }

    func entries(_ directory: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: directory).filter { !$0.hasSuffix(".lock") }.sorted()
    }

    func testCachedRows_EqualInflatedRows_FromOneEntry() throws {
        let source = try gzippedImages(count: 300, seed: 1)
        let cache = try cacheDirectory()
        let indices = [0, 1, 7, 150, 299]
        let inflated = try DataLoader.readItems(source, indices: indices, cache: .some(nil))
        let cached = try DataLoader.readItems(source, indices: indices, cache: cache)
        XCTAssertEqual(cached.1, inflated.1)
        XCTAssertEqual(cached.0.itemCount, 300)
        XCTAssertEqual(try entries(cache).count, 1)
        let entry = (cache as NSString).appendingPathComponent(try entries(cache)[0])
        let built = try FileManager.default.attributesOfItem(atPath: entry)[.modificationDate] as? Date
        // A second read maps the same entry (not rebuilt) and gives the same rows.
        let again = try DataLoader.readItems(source, indices: indices, cache: cache)
        XCTAssertEqual(again.1, inflated.1)
        XCTAssertEqual(try FileManager.default.attributesOfItem(atPath: entry)[.modificationDate] as? Date, built)
        // Every row (pieces of 1 MiB from the entry; the selector buffers only the header).
        let all = try DataLoader.readItems(source, indices: Array(0..<300), cache: cache)
        XCTAssertEqual(all.1, Array(TinyIDX.images(count: 300, seed: 1).dropFirst(16)))
    }

    func testChangedSource_RebuildsTheEntry() throws {
        let source = try gzippedImages(count: 100, seed: 1)
        let cache = try cacheDirectory()
        _ = try DataLoader.readItems(source, indices: [3], cache: cache)
        // New content, and a different modification time, at the same path.
        _ = try gzippedImages(count: 120, seed: 9)
        try FileManager.default.setAttributes(
            [.modificationDate: Date().addingTimeInterval(-3_600)], ofItemAtPath: source)
        let rows = try DataLoader.readItems(source, indices: [3, 119], cache: cache)
        XCTAssertEqual(rows.0.itemCount, 120)
        XCTAssertEqual(rows.1, try DataLoader.readItems(source, indices: [3, 119], cache: .some(nil)).1)
        XCTAssertEqual(try entries(cache).count, 1)
    }

    func testDamagedEntry_IsRebuilt() throws {
        let source = try gzippedImages(count: 80, seed: 2)
        let cache = try cacheDirectory()
        _ = try DataLoader.readItems(source, indices: [0], cache: cache)
        let entry = (cache as NSString).appendingPathComponent(try entries(cache)[0])
        let handle = try XCTUnwrap(FileHandle(forUpdatingAtPath: entry))
        try handle.truncate(atOffset: 100)
        try handle.close()
        let rows = try DataLoader.readItems(source, indices: [10, 79], cache: cache)
        XCTAssertEqual(rows.1, try DataLoader.readItems(source, indices: [10, 79], cache: .some(nil)).1)
    }

    func testConcurrentReaders_AllGetTheSameRows() throws {
        let source = try gzippedImages(count: 400, seed: 3)
        let cache = try cacheDirectory()
        let expected = try DataLoader.readItems(source, indices: [5, 399], cache: .some(nil)).1
        final class Results: @unchecked Sendable {
            let lock = NSLock()
            var rows: [Int: [UInt8]] = [:]
        }
        let results = Results()
        DispatchQueue.concurrentPerform(iterations: 6) { i in
            let rows = (try? DataLoader.readItems(source, indices: [5, 399], cache: cache).1) ?? []
            results.lock.withLock { results.rows[i] = rows }
        }
        for i in 0..<6 { XCTAssertEqual(results.rows[i], expected, "reader \(i)") }
        let names = try entries(cache)
        XCTAssertEqual(names.count, 1, "\(names)")
    }

    /// A stream with bytes past the data its header declares is not cached, and the read fails
    /// with the same error, naming the source, as without a cache.
    func testMalformedSource_IsNotCached_AndTheErrorNamesTheSource() throws {
        let raw = folder.appendingPathComponent("train-images-idx3-ubyte")
        try Data(TinyIDX.images(count: 20, seed: 4) + [1, 2, 3]).write(to: raw)
        let gzip = Process()
        gzip.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        gzip.arguments = ["gzip", "-f", "-n", raw.path]
        try gzip.run()
        gzip.waitUntilExit()
        let source = raw.path + ".gz"
        let cache = try cacheDirectory()
        XCTAssertThrowsError(try DataLoader.readItems(source, indices: [0], cache: cache)) { error in
            XCTAssertTrue("\(error)".contains(source), "\(error)")
            XCTAssertTrue("\(error)".contains("trailing bytes"), "\(error)")
        }
        XCTAssertEqual(try entries(cache), [])
    }

    func testCacheDirectory_IsRefusedWhenOthersCanWrite_OrWhenOff() throws {
        let shared = folder.appendingPathComponent("shared").path
        try FileManager.default.createDirectory(atPath: shared, withIntermediateDirectories: true)
        chmod(shared, 0o777)
        XCTAssertNil(IDXCache.directory(environment: ["DSGD_CACHE_DIR": shared]))
        XCTAssertNil(IDXCache.directory(environment: ["DSGD_CACHE_DIR": "off"]))
        let own = folder.appendingPathComponent("own/nested").path
        XCTAssertEqual(IDXCache.directory(environment: ["DSGD_CACHE_DIR": own]), own)
        var status = stat()
        XCTAssertEqual(stat(own, &status), 0)
        XCTAssertEqual(status.st_mode & 0o777, 0o700)
    }
}
