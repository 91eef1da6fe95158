/// Consumes the decompressed bytes of an IDX item file piece by piece and keeps only the items
/// whose index is in a sorted selection: a worker reads all of Fashion-MNIST's training images but
/// holds only its shard. Pure: the caller does the file reading.
public struct IDXRowSelector {
    public let name: String
    public private(set) var header: IDXHeader?
    public private(set) var selected: [UInt8] = []
    private var pendingHeader: [UInt8] = []
    private var rowFill = 0
    private var itemIndex = 0
    private var bytesSeen = 0
    private let selection: [Int]
    private var nextSelection = 0

    /// `selection` must be sorted ascending without repeats.
    public init(name: String, selection: [Int]) {
        self.name = name
        self.selection = selection
    }

    public mutating func consume(_ piece: UnsafeBufferPointer<UInt8>) throws {
        bytesSeen += piece.count
        var offset = 0
        // Only the header's own bytes are buffered (a whole mapped file may come as one piece).
        while header == nil, offset < piece.count {
            pendingHeader.append(piece[offset])
            offset += 1
            guard pendingHeader.count >= 4 else { continue }
            let rank = Int(pendingHeader[3])
            guard pendingHeader.count >= 4 + 4 * min(max(rank, 1), 4) else { continue }
            let parsed = try IDXHeader.parse(pendingHeader, name: name)
            header = parsed
            if let last = selection.last, last >= parsed.itemCount {
                throw DataError(file: name, reason: "needs item \(last) but the file holds \(parsed.itemCount) items")
            }
            // Reserve for what the header promises only up to 64 MiB: a header can lie about
            // sizes the data never delivers, and the buffer grows as real bytes arrive.
            selected.reserveCapacity(min(selection.count * parsed.itemLength, 1 << 26))
            pendingHeader = []
        }
        guard header != nil, offset < piece.count else { return }
        try consumeData(UnsafeBufferPointer(rebasing: piece[offset...]))
    }

    private mutating func consumeData(_ piece: UnsafeBufferPointer<UInt8>) throws {
        guard let header else { return }
        let itemLength = header.itemLength
        var offset = 0
        while offset < piece.count {
            if itemIndex >= header.itemCount {
                throw DataError(
                    file: name, reason: "trailing bytes after the \(header.dimensions) data the header declares")
            }
            let wanted = nextSelection < selection.count && selection[nextSelection] == itemIndex
            let take = min(itemLength - rowFill, piece.count - offset)
            if wanted { selected.append(contentsOf: UnsafeBufferPointer(rebasing: piece[offset..<(offset + take)])) }
            rowFill += take
            offset += take
            if rowFill == itemLength {
                rowFill = 0
                if wanted { nextSelection += 1 }
                itemIndex += 1
            }
        }
    }
    /// Call after the last piece: checks that the file held every item its header declared.
    public func finish() throws {
        guard let header else {
            throw DataError(file: name, reason: "file is \(bytesSeen) bytes, too short for an IDX header")
        }
        if itemIndex < header.itemCount || rowFill != 0 {
            throw DataError(
                file: name,
                reason:
                    "truncated: header declares \(header.itemCount) items of \(header.itemLength) bytes but the data ends in item \(itemIndex)"
            )
        }
    }
}
