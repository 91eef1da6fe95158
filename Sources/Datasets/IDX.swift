/// The IDX format of MNIST and Fashion-MNIST (LeCun et al.): a big-endian header
/// `0x00 0x00 <type> <rank>` followed by `rank` UInt32 dimensions, then the data.
/// dsgd reads type 0x08 (unsigned byte) only, which both data sets use.
public struct IDXHeader: Sendable, Equatable {
    public var dimensions: [Int]
    public var headerLength: Int { 4 + 4 * dimensions.count }
    public var elementCount: Int { dimensions.reduce(1, *) }
    /// Bytes per item (the product of all dimensions after the first).
    public var itemLength: Int { dimensions.dropFirst().reduce(1, *) }
    public var itemCount: Int { dimensions.first ?? 0 }

    /// Parses the header at the start of `bytes`; `name` labels errors (usually the file path).
    public static func parse(_ bytes: some Collection<UInt8>, name: String) throws(DataError) -> IDXHeader {
        let b = Array(bytes.prefix(4 + 4 * 4))
        guard b.count >= 4 else {
            throw DataError(file: name, reason: "file is \(b.count) bytes, too short for an IDX header")
        }
        guard b[0] == 0, b[1] == 0 else {
            let magic = b.prefix(4).map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
            throw DataError(
                file: name, reason: "bad IDX magic number 0x\(magic) (expected 0x000008 followed by the rank)")
        }
        guard b[2] == 0x08 else {
            throw DataError(
                file: name, reason: "IDX element type 0x\(String(b[2], radix: 16)) is not unsigned byte (0x08)")
        }
        let rank = Int(b[3])
        guard (1...4).contains(rank) else { throw DataError(file: name, reason: "IDX rank \(rank) is outside 1...4") }
        guard b.count >= 4 + 4 * rank else {
            throw DataError(file: name, reason: "truncated IDX header (rank \(rank))")
        }
        var dimensions: [Int] = []
        for d in 0..<rank {
            let o = 4 + 4 * d
            dimensions.append(Int(b[o]) << 24 | Int(b[o + 1]) << 16 | Int(b[o + 2]) << 8 | Int(b[o + 3]))
        }
        if dimensions.contains(0) { throw DataError(file: name, reason: "IDX dimension of size 0: \(dimensions)") }
        return IDXHeader(dimensions: dimensions)
    }

    /// Checks that a complete file of `byteCount` bytes holds exactly the data its header declares.
    public func checkLength(_ byteCount: Int, name: String) throws(DataError) {
        let expected = headerLength + elementCount
        if byteCount < expected {
            throw DataError(
                file: name,
                reason: "truncated: header declares \(dimensions) (\(expected) bytes) but the file has \(byteCount)")
        }
        if byteCount > expected {
            throw DataError(
                file: name,
                reason: "\(byteCount - expected) trailing bytes after the \(dimensions) data the header declares")
        }
    }
}

/// A data-file problem, naming the file.
public struct DataError: Error, CustomStringConvertible, Equatable {
    public var file: String
    public var reason: String
    public init(file: String, reason: String) {
        self.file = file
        self.reason = reason
    }
    public var description: String { "\(file): \(reason)" }
}

extension IDXHeader {
    /// Decodes a complete, decompressed label file (rank 1).
    public static func decodeLabels(_ bytes: [UInt8], name: String, classCount: Int = 10) throws(DataError) -> [UInt8] {
        let header = try parse(bytes, name: name)
        guard header.dimensions.count == 1 else {
            throw DataError(file: name, reason: "a label file has rank 1, this one has dimensions \(header.dimensions)")
        }
        try header.checkLength(bytes.count, name: name)
        let labels = Array(bytes[header.headerLength...])
        if let bad = labels.firstIndex(where: { Int($0) >= classCount }) {
            throw DataError(file: name, reason: "label \(labels[bad]) at item \(bad) is not below \(classCount)")
        }
        return labels
    }
}
