import Foundation
import LearningCore

#if canImport(Glibc)
    import Glibc
#endif

/// A run folder's checkpoints: `checkpoints/round-<round>.ckpt`, each written whole or not at all
/// (temporary file, fsync, rename, fsync of the folder), the last two kept.
///
/// The file: the magic `DSGDCKPT`, then `StateWriter` bytes (section "checkpoint", the format
/// version, the round, the configuration as JSON and its FNV-1a hash, the coordinator's state,
/// every worker's state),
/// then an FNV-1a 64-bit checksum of everything before it, so a torn or damaged file is found.
public struct CheckpointStore {
    /// Bumped whenever what a checkpoint holds changes; a checkpoint of another version is refused.
    public static let formatVersion = 1
    static let magic = Array("DSGDCKPT".utf8)
    public static let kept = 2

    public let directory: URL

    public init(runDirectory: URL) {
        directory = runDirectory.appendingPathComponent("checkpoints")
    }

    /// A checkpoint read back: its snapshot and the configuration it was taken under.
    public struct Loaded {
        public var snapshot: CheckpointSnapshot
        public var configuration: RunConfiguration
        public var url: URL
    }

    public func url(round: Int) -> URL {
        directory.appendingPathComponent(String(format: "round-%09d.ckpt", round))
    }

    /// Writes the checkpoint atomically and removes all but the newest `kept`.
    public func write(_ snapshot: CheckpointSnapshot, configuration: RunConfiguration) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var writer = StateWriter()
        writer.section("checkpoint")
        writer.write(Self.formatVersion)
        writer.write(snapshot.round)
        let json = try Self.canonicalJSON(configuration)
        writer.write(json)
        writer.write(Self.checksum(Array(json.utf8)))
        writer.write(snapshot.coordinatorState)
        writer.write(snapshot.workerStates.count)
        for state in snapshot.workerStates { writer.write(state) }
        var bytes = Self.magic + writer.bytes
        withUnsafeBytes(of: Self.checksum(bytes).littleEndian) { bytes.append(contentsOf: $0) }
        let final = url(round: snapshot.round)
        let temporary = directory.appendingPathComponent("." + final.lastPathComponent + ".tmp")
        try? FileManager.default.removeItem(at: temporary)
        guard FileManager.default.createFile(atPath: temporary.path, contents: nil) else {
            throw RunReportError(reason: "\(temporary.path): cannot be created")
        }
        let handle = try FileHandle(forWritingTo: temporary)
        do {
            try handle.write(contentsOf: Data(bytes))
            try handle.synchronize()
            try handle.close()
        } catch {
            try? handle.close()
            try? FileManager.default.removeItem(at: temporary)
            throw RunReportError(reason: "\(temporary.path): the checkpoint could not be written (\(error))")
        }
        guard rename(temporary.path, final.path) == 0 else {
            let reason = String(cString: strerror(errno))
            try? FileManager.default.removeItem(at: temporary)
            throw RunReportError(reason: "\(final.path): cannot rename the checkpoint into place (\(reason))")
        }
        let folder = open(directory.path, O_RDONLY)
        if folder >= 0 {
            _ = fsync(folder)
            close(folder)
        }
        for old in rounds().dropLast(Self.kept) { try? FileManager.default.removeItem(at: url(round: old)) }
    }

    /// The rounds of the checkpoints in the folder, ascending.
    public func rounds() -> [Int] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return names.compactMap { name -> Int? in
            guard name.hasPrefix("round-"), name.hasSuffix(".ckpt") else { return nil }
            return Int(name.dropFirst("round-".count).dropLast(".ckpt".count))
        }.sorted()
    }

    /// The newest checkpoint that reads back whole; a damaged newer one is reported through
    /// `log` and passed over. Throws when there is none, or when the newest whole one is of
    /// another format version.
    public func loadNewest(log: (String) -> Void) throws -> Loaded {
        let available = rounds()
        guard !available.isEmpty else {
            throw RunReportError(reason: "\(directory.path): no checkpoint to resume from")
        }
        var problems: [String] = []
        for round in available.reversed() {
            let url = url(round: round)
            do {
                return try load(url)
            } catch let error as CheckpointVersionError {
                throw RunReportError(reason: "\(url.path): \(error)")
            } catch {
                problems.append("\(url.lastPathComponent): \(error)")
                log("resume: passed over \(url.path): \(error)")
            }
        }
        throw RunReportError(
            reason: "\(directory.path): no checkpoint reads back whole (\(problems.joined(separator: "; ")))")
    }

    public func load(_ url: URL) throws -> Loaded {
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw RunReportError(reason: "cannot be read")
        }
        let bytes = [UInt8](data)
        guard bytes.count >= Self.magic.count + 8, Array(bytes.prefix(Self.magic.count)) == Self.magic else {
            throw RunReportError(reason: "not a dsgd checkpoint (no DSGDCKPT at its start)")
        }
        let body = Array(bytes.dropLast(8))
        let stored = bytes.suffix(8).enumerated().reduce(UInt64(0)) {
            $0 | UInt64($1.element) << (8 * UInt64($1.offset))
        }
        guard Self.checksum(body) == stored else {
            throw RunReportError(reason: "its checksum does not match (the file is torn or damaged)")
        }
        var reader = StateReader(Array(body.dropFirst(Self.magic.count)))
        try reader.expectSection("checkpoint")
        let version = try reader.readInt()
        guard version == Self.formatVersion else {
            throw CheckpointVersionError(found: version)
        }
        let round = try reader.readInt()
        let json = try reader.readString()
        guard try reader.readUInt64() == Self.checksum(Array(json.utf8)) else {
            throw RunReportError(reason: "its configuration does not match the configuration hash stored with it")
        }
        let configuration: RunConfiguration
        do {
            configuration = try JSONDecoder().decode(RunConfiguration.self, from: Data(json.utf8))
        } catch {
            throw RunReportError(reason: "its configuration does not decode: \(error)")
        }
        let coordinator = try reader.readBytes()
        let count = try reader.readInt()
        guard count == configuration.workers else {
            throw RunReportError(reason: "it holds \(count) workers' states for a run of \(configuration.workers)")
        }
        var workers: [[UInt8]] = []
        for _ in 0..<count { workers.append(try reader.readBytes()) }
        guard reader.isAtEnd else { throw RunReportError(reason: "bytes left over after the workers' states") }
        return Loaded(
            snapshot: CheckpointSnapshot(round: round, coordinatorState: coordinator, workerStates: workers),
            configuration: configuration, url: url)
    }

    /// The configuration as the checkpoint compares it: sorted keys, the checkpoint schedule and
    /// the run's name (its folder's: a folder may be moved) left out; neither changes a number.
    static func canonicalJSON(_ configuration: RunConfiguration) throws -> String {
        var comparable = configuration
        comparable.checkpoints = nil
        comparable.runName = ""
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(
            positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return String(decoding: try encoder.encode(comparable), as: UTF8.self)
    }

    /// The fields in which `resumed` differs from the checkpoint's configuration, as
    /// "path: checkpoint value → this run's value" (empty: the same run).
    public static func differences(checkpoint: RunConfiguration, resumed: RunConfiguration) throws -> [String] {
        let old = try JSONSerialization.jsonObject(with: Data(canonicalJSON(checkpoint).utf8))
        let new = try JSONSerialization.jsonObject(with: Data(canonicalJSON(resumed).utf8))
        var found: [String] = []
        func text(_ value: Any?) -> String {
            guard let value else { return "(absent)" }
            if let data = try? JSONSerialization.data(withJSONObject: value, options: [.fragmentsAllowed, .sortedKeys])
            {
                let string = String(decoding: data, as: UTF8.self)
                return string.count > 80 ? String(string.prefix(77)) + "..." : string
            }
            return "\(value)"
        }
        func compare(_ a: Any?, _ b: Any?, _ path: String) {
            if let a = a as? [String: Any], let b = b as? [String: Any] {
                for key in Set(a.keys).union(b.keys).sorted() {
                    compare(a[key], b[key], path.isEmpty ? key : path + "." + key)
                }
            } else if let a = a as? [Any], let b = b as? [Any], a.count == b.count {
                for index in a.indices { compare(a[index], b[index], "\(path)[\(index)]") }
            } else if text(a) != text(b) || (a == nil) != (b == nil) {
                found.append("\(path): \(text(a)) in the checkpoint, \(text(b)) now")
            }
        }
        compare(old, new, "")
        return found
    }

    /// FNV-1a, 64 bits.
    static func checksum(_ bytes: [UInt8]) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01B3
        }
        return hash
    }
}

/// A checkpoint written by another version of dsgd's checkpoint format.
public struct CheckpointVersionError: Error, CustomStringConvertible {
    public var found: Int
    public var description: String {
        "a checkpoint of format version \(found); this dsgd reads version \(CheckpointStore.formatVersion) only"
    }
}
