import Datasets
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A per-host cache of decompressed IDX files: the first process of a host to read a gzipped IDX
/// file inflates it once into the cache (under an exclusive `flock`, so sixteen workers starting
/// together inflate it once, not sixteen times); every process then reads the raw file and copies
/// out the rows it needs, read through the page cache, which holds one copy for all of them.
///
/// An entry is `<cache>/idx-<hash of the source path>-<name>`: a 64-byte header (magic, the
/// source's size and modification time, the payload length) and the decompressed bytes. It is used
/// only when the header matches the source as it is now; otherwise it is rebuilt. Entries are
/// written to a temporary name and renamed into place, so a reader never sees half of one.
///
/// The cache directory is `$DSGD_CACHE_DIR`, else `$XDG_CACHE_HOME/dsgd`, else `~/.cache/dsgd`;
/// it is created 0700 and used only when owned by this user and writable by nobody else. When it
/// cannot be used (read-only home, full disk, `DSGD_CACHE_DIR=off`) reading falls back to
/// inflating in the process, with the same result.
public enum IDXCache {
    static let magic: [UInt8] = Array("DSGDIDX1".utf8)
    static let headerLength = 64

    /// The cache directory, or nil when caching is off or the place is not safe to use.
    public static func directory(environment: [String: String] = ProcessInfo.processInfo.environment) -> String? {
        let chosen: String
        if let explicit = environment["DSGD_CACHE_DIR"], !explicit.isEmpty {
            if explicit == "off" { return nil }
            chosen = explicit
        } else if let xdg = environment["XDG_CACHE_HOME"], !xdg.isEmpty {
            chosen = (xdg as NSString).appendingPathComponent("dsgd")
        } else {
            chosen = (NSHomeDirectory() as NSString).appendingPathComponent(".cache/dsgd")
        }
        try? FileManager.default.createDirectory(
            atPath: chosen, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        var status = stat()
        guard stat(chosen, &status) == 0, status.st_mode & S_IFMT == S_IFDIR, status.st_uid == getuid(),
            status.st_mode & 0o022 == 0
        else { return nil }
        return chosen
    }

    /// The path of an up-to-date decompressed copy of the gzipped file at `source`, building it if
    /// needed; nil when the cache cannot be used (the caller inflates by itself).
    public static func decompressedCopy(of source: String, in directory: String) -> String? {
        var sourceStatus = stat()
        guard stat(source, &sourceStatus) == 0 else { return nil }
        let absolute = URL(fileURLWithPath: source).standardizedFileURL.path
        let entry = (directory as NSString).appendingPathComponent(
            "idx-\(String(fnv1a(absolute), radix: 16))-\((source as NSString).lastPathComponent)")
        if isCurrent(entry, for: sourceStatus) { return entry }
        // One builder per entry and host; the others wait here and then find it current.
        let lock = open(entry + ".lock", O_CREAT | O_RDWR | O_CLOEXEC, 0o600)
        guard lock >= 0 else { return nil }
        defer { close(lock) }
        while flock(lock, LOCK_EX) != 0 {
            guard errno == EINTR else { return nil }
        }
        defer { flock(lock, LOCK_UN) }
        if isCurrent(entry, for: sourceStatus) { return entry }
        do {
            try build(entry, from: source, status: sourceStatus)
            return isCurrent(entry, for: sourceStatus) ? entry : nil
        } catch {
            return nil
        }
    }

    /// The header an entry for a source with this status carries.
    static func header(for status: stat, payloadLength: Int) -> [UInt8] {
        var bytes = magic
        for value in [
            UInt64(status.st_size), UInt64(bitPattern: Int64(status.st_mtim.tv_sec)),
            UInt64(bitPattern: Int64(status.st_mtim.tv_nsec)), UInt64(payloadLength),
        ] {
            withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
        }
        bytes.append(contentsOf: [UInt8](repeating: 0, count: headerLength - bytes.count))
        return bytes
    }

    /// The entry exists, its header matches the source's size and modification time, and its
    /// length is the header's plus the payload it declares.
    static func isCurrent(_ entry: String, for status: stat) -> Bool {
        guard let handle = FileHandle(forReadingAtPath: entry) else { return false }
        defer { try? handle.close() }
        guard let head = try? handle.read(upToCount: headerLength), head.count == headerLength,
            let end = try? handle.seekToEnd()
        else { return false }
        let payload = head[head.startIndex + 32..<head.startIndex + 40].withUnsafeBytes {
            UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self))
        }
        return Array(head) == header(for: status, payloadLength: Int(payload))
            && end == UInt64(headerLength) + payload
    }

    /// Inflates `source` into a temporary file beside `entry`, then renames it into place.
    static func build(_ entry: String, from source: String, status: stat) throws {
        let temporary = entry + ".tmp-\(getpid())"
        defer { unlink(temporary) }
        let descriptor = open(temporary, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw DataError(file: temporary, reason: "cannot create cache entry") }
        let output = FileHandle(fileDescriptor: descriptor, closeOnDealloc: true)
        try output.write(contentsOf: [UInt8](repeating: 0, count: headerLength))
        guard let input = FileHandle(forReadingAtPath: source) else {
            throw DataError(file: source, reason: "cannot open file")
        }
        defer { try? input.close() }
        let inflater = try GzipInflater(name: source)
        // Only a well-formed IDX file is cached: its header is checked and nothing past the data
        // it declares is written (a hostile stream stops here; the caller's own read reports it).
        var checker = IDXRowSelector(name: source, selection: [])
        var written = 0
        while let chunk = try input.read(upToCount: 1 << 20), !chunk.isEmpty {
            try chunk.withUnsafeBytes { raw in
                try inflater.feed(raw) { piece in
                    try checker.consume(piece)
                    written += piece.count
                    try output.write(contentsOf: Data(buffer: piece))
                }
            }
        }
        guard inflater.isFinished else { throw DataError(file: source, reason: "truncated gzip stream") }
        try checker.finish()
        try output.seek(toOffset: 0)
        try output.write(contentsOf: header(for: status, payloadLength: written))
        try output.synchronize()
        try output.close()
        guard rename(temporary, entry) == 0 else { throw DataError(file: entry, reason: "cannot rename into place") }
    }

    /// Feeds the payload of an entry to `body` in pieces of 1 MiB, read from the page cache (not
    /// mapped: mapped pages would count in every worker's resident memory while it loads).
    static func forEachPayloadPiece(of entry: String, _ body: (UnsafeBufferPointer<UInt8>) throws -> Void) throws {
        let descriptor = open(entry, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw DataError(file: entry, reason: "cannot open cache entry") }
        defer { close(descriptor) }
        let buffer = UnsafeMutablePointer<UInt8>.allocate(capacity: 1 << 20)
        defer { buffer.deallocate() }
        var offset = off_t(headerLength)
        while true {
            let count = pread(descriptor, buffer, 1 << 20, offset)
            if count < 0 {
                if errno == EINTR { continue }
                throw DataError(file: entry, reason: "read failed: \(String(cString: strerror(errno)))")
            }
            if count == 0 { return }
            try body(UnsafeBufferPointer(start: buffer, count: count))
            offset += off_t(count)
        }
    }

    /// FNV-1a, 64 bits: a stable name for a source path.
    static func fnv1a(_ text: String) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 {
            hash ^= UInt64(byte)
            hash &*= 0x100_0000_01b3
        }
        return hash
    }
}
