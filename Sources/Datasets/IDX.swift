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
        // Four 32-bit dimensions can multiply past Int: check the product before anyone sizes a
        // buffer from it, against stated caps.
        var elements = 1
        for dimension in dimensions {
            let (product, overflow) = elements.multipliedReportingOverflow(by: dimension)
            guard !overflow, product <= maximumElements else {
                throw DataError(
                    file: name,
                    reason:
                        "IDX dimensions \(dimensions) declare more than \(maximumElements) bytes of data (the cap dsgd reads)"
                )
            }
            elements = product
        }
        let header = IDXHeader(dimensions: dimensions)
        guard header.itemLength <= maximumItemLength else {
            throw DataError(
                file: name,
                reason:
                    "IDX items of \(header.itemLength) bytes (dimensions \(dimensions)) exceed the cap of \(maximumItemLength)"
            )
        }
        return header
    }

    /// The most data bytes an IDX file may declare (8 GiB; Fashion-MNIST's training images are 47 MB).
    public static let maximumElements = 1 << 33
    /// The longest item (16 MiB; a 28×28 image is 784 bytes).
    public static let maximumItemLength = 1 << 24

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
