/// What a message is.
public enum MessageKind: UInt16, Sendable, CaseIterable {
    /// worker → coordinator: "here is my inbox endpoint"; body `Registration` JSON.
    case register = 1
    /// coordinator → worker: rank, run id, configuration and peer endpoints; body JSON.
    case assignment = 2
    /// worker → coordinator: data loaded, ready for the barrier.
    case ready = 3
    /// coordinator → all workers: barrier released.
    case start = 4
    /// worker → worker: the sender's parameters for a round; payload floats.
    case parameters = 5
    /// worker → coordinator: a round's metrics; body JSON, payload = parameters on metric rounds.
    case metrics = 6
    /// worker → coordinator: all rounds done; body JSON.
    case finished = 7
    /// either way: stop the run; body is the reason (UTF-8).
    case abort = 8
    /// coordinator → worker: rounds 1...`round` are recorded (flow control); `round` beyond the
    /// last round means the run is complete and the worker may exit.
    case acknowledge = 9
    /// either way, every heartbeat interval: "still here".
    case heartbeat = 10
    /// coordinator → workers: workers removed from the run (body `MembershipChange` JSON).
    case membership = 11
    /// coordinator (federated server) → clients: the aggregated global model after a round.
    case globalModel = 12
    /// worker → coordinator: its personalized model's loss and accuracy on its own test split
    /// after an evaluation round; body JSON.
    case clientEvaluation = 13
    /// worker → worker, C-SGD's all-reduce: a chunk of the sender's model or a partial sum of it
    /// for the chunk's owner; body: chunk and ring step (UInt32 each, little-endian).
    case reduceScatter = 14
    /// worker → worker, C-SGD's all-reduce: an averaged chunk; body as for `reduceScatter`.
    case allGather = 15
    /// worker → coordinator: everything a bit-exact continuation needs of the worker after round
    /// `round` (1-based, completed); body: the worker's state (`StateWriter` bytes).
    case checkpointState = 16
    /// coordinator → workers: write a checkpoint after round `round` (1-based) as well (the
    /// wall-time trigger); no body.
    case checkpointRequest = 17
    /// worker → worker, C-SGD's all-reduce over shared memory: where the averaged chunks of every
    /// other worker are (`Envelope.forwarded`, in rank order), from the worker that gathered them;
    /// body as for `reduceScatter` (chunk 0, step 0).
    case allReduceResult = 18
    /// worker → worker, C-SGD's all-reduce over shared memory: the sender's whole model, to the
    /// worker that tells every chunk's owner where the models are; body as for `reduceScatter`
    /// (chunk 0, step 0).
    case allReduceContribution = 19
    /// worker → worker, C-SGD's all-reduce over shared memory: where every other worker's part of
    /// the receiver's chunk is (`Envelope.forwarded`, in rank order), from the worker that
    /// gathered the contributions; body as for `reduceScatter` (the receiver's chunk, step 0).
    case allReduceDirectory = 20

    /// Kinds whose payload is a chunk of a model (at most the model's length), not a whole one.
    public var carriesChunk: Bool { self == .reduceScatter || self == .allGather }
}

/// How the payload frames encode the floats.
public enum PayloadEncoding: UInt16, Sendable {
    /// The Float32 values themselves.
    case dense = 0
    /// `SparsePayload`: the dense length, the indices of the non-zero values and the values.
    case sparse = 1
    /// The values stay in the sender's shared-memory segment (processes on one host); the one
    /// payload frame is a `sharedMemoryDescriptorBytes`-byte descriptor of the slot holding them,
    /// and `payloadCount` is the dense length.
    case sharedMemory = 2
    /// No payload of the sender's own: the one frame after the header lists payloads that other
    /// processes of the host published (`Envelope.forwarded`), each as its publisher's rank (Int32),
    /// four zero bytes and the `sharedMemoryDescriptorBytes`-byte descriptor of its slot.
    case forwardedSharedMemory = 3

    /// The payload frame of a `.sharedMemory` message: slot, sequence, count and round.
    public static let sharedMemoryDescriptorBytes = 32
    /// One entry of a `.forwardedSharedMemory` frame.
    public static let forwardedEntryBytes = 8 + sharedMemoryDescriptorBytes
}

/// The fixed header of every message.
public struct MessageHeader: Sendable, Equatable {
    public static let magic: [UInt8] = Array("DSGD".utf8)
    /// Bumped whenever the frame layout or a body schema changes incompatibly (2: payload encoding;
    /// 3: shared-memory payloads; 4: checkpoints; 5: the all-reduce's contributions and
    /// directories, forwarded payloads).
    public static let currentVersion: UInt16 = 5
    public static let byteCount = 4 + 2 + 2 + 8 + 8 + 4 + 4 + 2

    public var version: UInt16
    public var kind: MessageKind
    public var runID: UInt64
    public var round: Int64
    /// Sender rank; −1 for the coordinator and for unregistered workers.
    public var sender: Int32
    /// Number of Float32 slots in the payload frames (0 for none).
    public var payloadCount: UInt32
    public var payloadEncoding: PayloadEncoding = .dense

    public init(kind: MessageKind, runID: UInt64, round: Int64 = 0, sender: Int32, payloadCount: UInt32 = 0) {
        version = Self.currentVersion
        self.kind = kind
        self.runID = runID
        self.round = round
        self.sender = sender
        self.payloadCount = payloadCount
    }
}

/// A payload that another process published in shared memory, passed on by reference: the
/// receiver reads it in the publisher's segment, not the sender's.
public struct ForwardedPayload: Sendable {
    /// The publisher's rank (−1: the coordinator).
    public var publisher: Int32
    public var payload: FloatPayload

    public init(publisher: Int32, payload: FloatPayload) {
        self.publisher = publisher
        self.payload = payload
    }
}

/// A message: header, optional body bytes (JSON or text), optional float payload, or payloads
/// other processes published that the sender passes on (processes on one host only).
public struct Envelope: Sendable {
    public var header: MessageHeader
    public var body: [UInt8]
    public var payload: FloatPayload?
    /// Payloads published by other processes of the host, passed on by their descriptors (a
    /// message has these or `payload`, not both).
    public var forwarded: [ForwardedPayload]

    public init(header: MessageHeader, body: [UInt8] = [], payload: FloatPayload? = nil) {
        var header = header
        header.payloadCount = UInt32(payload?.count ?? 0)
        self.header = header
        self.body = body
        self.payload = payload
        forwarded = []
    }

    /// A message passing on payloads other processes published (`forwarded` in order).
    public init(header: MessageHeader, body: [UInt8] = [], forwarded: [ForwardedPayload]) {
        var header = header
        header.payloadCount = 0
        header.payloadEncoding = .forwardedSharedMemory
        self.header = header
        self.body = body
        payload = nil
        self.forwarded = forwarded
    }

    /// Largest payload frame: models bigger than this travel as several frames (4 MiB, as
    /// measured in ../shared/research/platform-notes.md §3b: fewer page faults than one huge frame).
    public static let payloadFrameBytes = 4 << 20

    /// Frame 0: header followed by the body.
    public var firstFrame: [UInt8] {
        var bytes = MessageHeader.magic
        bytes.reserveCapacity(MessageHeader.byteCount + body.count)
        func put<T: FixedWidthInteger>(_ value: T) {
            withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
        }
        put(header.version)
        put(header.kind.rawValue)
        put(header.runID)
        put(header.round)
        put(header.sender)
        put(header.payloadCount)
        put(header.payloadEncoding.rawValue)
        bytes.append(contentsOf: body)
        return bytes
    }

    /// Payload frame boundaries in floats.
    public static func payloadFrameRanges(count: Int) -> [Range<Int>] {
        let perFrame = payloadFrameBytes / MemoryLayout<Float>.size
        return stride(from: 0, to: count, by: perFrame).map { $0..<min($0 + perFrame, count) }
    }

    /// Decodes frame 0 into a header and body, rejecting anything malformed with a reason.
    public static func decodeFirstFrame(_ frame: UnsafeRawBufferPointer) throws(WireError) -> (MessageHeader, [UInt8]) {
        guard frame.count >= MessageHeader.byteCount else {
            throw WireError.malformed(
                "first frame is \(frame.count) bytes, shorter than the \(MessageHeader.byteCount)-byte header")
        }
        guard Array(frame[0..<4]) == MessageHeader.magic else {
            throw WireError.malformed("bad magic: not a dsgd message")
        }
        var offset = 4
        func get<T: FixedWidthInteger>(_: T.Type) -> T {
            var value: T = 0
            withUnsafeMutableBytes(of: &value) {
                $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: frame[offset..<(offset + MemoryLayout<T>.size)]))
            }
            offset += MemoryLayout<T>.size
            return T(littleEndian: value)
        }
        let version = get(UInt16.self)
        guard version == MessageHeader.currentVersion else {
            throw WireError.versionMismatch(received: version, expected: MessageHeader.currentVersion)
        }
        let rawKind = get(UInt16.self)
        guard let kind = MessageKind(rawValue: rawKind) else {
            throw WireError.malformed("unknown message kind \(rawKind)")
        }
        var header = MessageHeader(kind: kind, runID: get(UInt64.self), round: get(Int64.self), sender: get(Int32.self))
        header.payloadCount = get(UInt32.self)
        let rawEncoding = get(UInt16.self)
        guard let encoding = PayloadEncoding(rawValue: rawEncoding) else {
            throw WireError.malformed("unknown payload encoding \(rawEncoding)")
        }
        header.payloadEncoding = encoding
        return (header, Array(frame[MessageHeader.byteCount...]))
    }
}

/// Why a message was rejected.
public enum WireError: Error, CustomStringConvertible, Equatable {
    case malformed(String)
    case versionMismatch(received: UInt16, expected: UInt16)

    public var description: String {
        switch self {
        case .malformed(let reason): "malformed message: \(reason)"
        case .versionMismatch(let received, let expected): "protocol version \(received), expected \(expected)"
        }
    }
}
