import Foundation
import XCTest

/// The rooms of the package, checked on its sources: the pure targets (the math, the algorithms,
/// the protocol, the machines) import no Foundation (at most FoundationEssentials, for JSON
/// coding) and touch no files, threads, processes, sockets or clocks; the run records may code
/// JSON with Foundation but do no I/O either; only ZeroMQTransport names libzmq; Reports reads
/// the run records, not the machines and shells.
final class ArchitectureTests: XCTestCase {
    private let sources = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Sources")

    private let pureTargets = [
        "LearningCore", "Optimizers", "Topologies", "Algorithms", "Diagnostics", "Wire", "Transport", "Machines",
        "Sweeps",
    ]
    /// I/O, concurrency and clocks, as whole words of code.
    private let forbidden = [
        "FileManager", "FileHandle", "Thread", "Process", "fopen", "open", "socket", "Date", "ContinuousClock",
        "DispatchQueue", "zmq_[a-z_]+", "shm_open",
    ]
    /// Allowed with their reason: OpenBLAS's opt-in call timer (off unless a profiler installs it).
    private let allowed: Set<String> = ["LearningCore/BLAS.swift: ContinuousClock"]

    private func swiftFiles(_ target: String, required: Bool = true) throws -> [(String, String)] {
        let folder = sources.appendingPathComponent(target)
        let names = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".swift") }
        if required { XCTAssertFalse(names.isEmpty, "no sources in \(folder.path)") }
        return try names.sorted().map {
            ("\(target)/\($0)", try String(contentsOf: folder.appendingPathComponent($0), encoding: .utf8))
        }
    }

    /// Code lines only: comments (which may name what the code must not do) are left out.
    private func code(_ text: String) -> [String] {
        text.split(separator: "\n").map { line in
            let text = String(line)
            guard let comment = text.range(of: "//") else { return text }
            return String(text[..<comment.lowerBound])
        }
    }

    func testPureTargets_DoNoIO_AndImportNoFoundation() throws {
        for target in pureTargets + ["RunRecords"] {
            for (name, text) in try swiftFiles(target) {
                let lines = code(text)
                if target != "RunRecords" {
                    XCTAssertFalse(lines.contains("import Foundation"), "\(name) imports Foundation")
                }
                for word in forbidden {
                    let pattern = try Regex("\\b\(word)\\b")
                    if lines.contains(where: { $0.contains(pattern) }) {
                        XCTAssertTrue(allowed.contains("\(name): \(word)"), "\(name) uses \(word)")
                    }
                }
            }
        }
    }

    func testOnlyZeroMQTransportImportsLibzmq_AndReportsReadOnlyTheRecords() throws {
        let targets = try FileManager.default.contentsOfDirectory(atPath: sources.path).filter {
            !$0.hasPrefix(".") && $0 != "CZeroMQ"
        }
        for target in targets where target != "ZeroMQTransport" {
            for (name, text) in try swiftFiles(target, required: false) {
                XCTAssertFalse(code(text).contains("import CZeroMQ"), "\(name) imports libzmq")
            }
        }
        for (name, text) in try swiftFiles("Reports") {
            let lines = code(text)
            for module in ["Runtime", "Machines"] {
                XCTAssertFalse(lines.contains("import \(module)"), "\(name) imports \(module)")
            }
        }
    }
}
