import CZlib

/// Incremental gzip (or raw zlib-less passthrough) decompression over zlib's inflate, so a worker
/// can stream a 26 MB Fashion-MNIST archive and keep only its own rows.
public final class GzipInflater {
    private var stream = z_stream()
    private var finished = false
    private let name: String
    private var output = [UInt8](repeating: 0, count: 1 << 18)

    /// `name` labels errors (usually the file path). With `acceptsZlib`, a zlib wrapper (as in PNG's
    /// image data) is accepted as well as gzip's.
    public init(name: String, acceptsZlib: Bool = false) throws {
        self.name = name
        // 16 + MAX_WBITS: expect a gzip wrapper; 32 + MAX_WBITS: detect gzip or zlib.
        let windowBits = (acceptsZlib ? 32 : 16) + MAX_WBITS
        let status = inflateInit2_(&stream, windowBits, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size))
        guard status == Z_OK else { throw DataError(file: name, reason: "zlib inflateInit2 failed (\(status))") }
    }

    deinit { inflateEnd(&stream) }

    /// True once the gzip end-of-stream marker has been decoded.
    public var isFinished: Bool { finished }

    /// Feeds compressed bytes; calls `sink` with each decompressed piece (valid only during the call).
    public func feed(_ input: UnsafeRawBufferPointer, sink: (UnsafeBufferPointer<UInt8>) throws -> Void) throws {
        guard input.count > 0 else { return }
        if finished { throw DataError(file: name, reason: "unexpected data after the end of the gzip stream") }
        stream.next_in = UnsafeMutablePointer(mutating: input.baseAddress!.assumingMemoryBound(to: Bytef.self))
        stream.avail_in = uInt(input.count)
        repeat {
            let status: Int32 = output.withUnsafeMutableBufferPointer { out in
                stream.next_out = out.baseAddress
                stream.avail_out = uInt(out.count)
                return inflate(&stream, Z_NO_FLUSH)
            }
            guard status == Z_OK || status == Z_STREAM_END || status == Z_BUF_ERROR else {
                let message = stream.msg.map { String(cString: $0) } ?? "status \(status)"
                throw DataError(file: name, reason: "corrupt gzip data: \(message)")
            }
            let produced = output.count - Int(stream.avail_out)
            if produced > 0 {
                try output.withUnsafeBufferPointer { (out) throws in
                    try sink(UnsafeBufferPointer(rebasing: out[0..<produced]))
                }
            }
            if status == Z_STREAM_END {
                finished = true
                if stream.avail_in > 0 {
                    throw DataError(file: name, reason: "unexpected data after the end of the gzip stream")
                }
                return
            }
            if status == Z_BUF_ERROR && produced == 0 { return }
        } while stream.avail_in > 0 || stream.avail_out == 0
    }

    /// Whole-buffer convenience; more than `maximumOutput` bytes of output (default 1 GiB) is an
    /// error naming the file, so a small archive cannot expand to fill the memory.
    public static func decompress(
        _ bytes: [UInt8], name: String, acceptsZlib: Bool = false, maximumOutput: Int = 1 << 30
    ) throws -> [UInt8] {
        let inflater = try GzipInflater(name: name, acceptsZlib: acceptsZlib)
        var result: [UInt8] = []
        try bytes.withUnsafeBytes { (raw) throws in
            try inflater.feed(raw) { (piece) throws in
                guard result.count + piece.count <= maximumOutput else {
                    throw DataError(
                        file: name, reason: "decompresses to more than \(maximumOutput) bytes (the cap dsgd reads)")
                }
                result.append(contentsOf: piece)
            }
        }
        guard inflater.isFinished else { throw DataError(file: name, reason: "truncated gzip stream") }
        return result
    }

    /// True when `bytes` start with the gzip magic 1f 8b.
    public static func isGzip(_ bytes: some Collection<UInt8>) -> Bool {
        Array(bytes.prefix(2)) == [0x1f, 0x8b]
    }
}
