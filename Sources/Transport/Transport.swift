@_exported import Wire

/// Who a message goes to.
public enum Peer: Hashable, Sendable, CustomStringConvertible {
    case coordinator
    case worker(Int)
    /// A worker that has registered but has no rank yet, identified by its registration nonce.
    case unranked(UInt64)

    public var description: String {
        switch self {
        case .coordinator: "coordinator"
        case .worker(let rank): "worker \(rank)"
        case .unranked(let nonce): "unranked worker \(nonce)"
        }
    }
}

/// Moves envelopes between the processes (or simulated nodes) of a run. Each node has one inbox
/// at `localEndpoint`; it learns other nodes' endpoints from the protocol and `connect`s to them.
///
/// Implementations: `InMemoryTransport` (deterministic, one process) and `ZeroMQTransport`.
/// Not thread-safe: one node's transport is used from one thread.
public protocol Transport: AnyObject {
    var localEndpoint: String { get }
    func connect(_ peer: Peer, endpoint: String) throws
    func send(_ envelope: Envelope, to peer: Peer) throws
    /// The next envelope, waiting up to `timeoutMilliseconds` (0: do not wait). A frame sequence
    /// that cannot be decoded is reported as `.rejected` rather than thrown, so one bad message
    /// never stops a node.
    func receive(timeoutMilliseconds: Int) throws -> Received?
    /// Total bytes handed to `send` so far (headers, bodies and payloads).
    var bytesSent: Int { get }
    /// What this node accepts from now on, checked on each frame's header before its payload is
    /// decoded or anything is allocated for it (see `FrameAdmission`).
    func admit(_ admission: FrameAdmission)
    /// From now on, payloads to and from the other processes of run `runID` travel through
    /// shared memory as `plan` says: this node (worker `rank`, or the coordinator when nil)
    /// creates its segment now, so a full or missing `/dev/shm` fails here, before the first round.
    func shareModels(_ plan: SharedPayloadPlan, runID: UInt64, rank: Int?) throws
    /// An immutable snapshot of `values` (a model of round `round`, 1-based, which labels it) to
    /// send to `readers`: a private copy, or (shared memory) the values written once into a slot
    /// of this node's segment, so sending them copies nothing more.
    func makePayload(_ values: UnsafeBufferPointer<Float>, round: Int, readers: PayloadReaders) -> FloatPayload
    /// No reader uses this node's models of round `round` or before any more (a worker: the
    /// coordinator recorded the round), so their shared-memory slots may be written again.
    func releasePayloads(through round: Int)
}

extension Transport {
    /// Transports that decode no frames (in memory) have nothing to check.
    public func admit(_ admission: FrameAdmission) {}
    /// Transports within one process pass payloads by reference already.
    public func shareModels(_ plan: SharedPayloadPlan, runID: UInt64, rank: Int?) throws {}
    public func makePayload(_ values: UnsafeBufferPointer<Float>, round: Int, readers: PayloadReaders) -> FloatPayload {
        FloatPayload(copying: values)
    }
    public func releasePayloads(through round: Int) {}
    /// A snapshot for other workers.
    public func makePayload(_ values: UnsafeBufferPointer<Float>, round: Int) -> FloatPayload {
        makePayload(values, round: round, readers: .workers)
    }
}

/// Who reads a payload. With shared memory, a worker's payloads for other workers fill its
/// segment's slots from the first, and those for the coordinator alone from the last, so a reader
/// touches (and counts as resident) only the slots of payloads meant for it.
public enum PayloadReaders: Sendable {
    case workers
    case coordinator
}

/// How the processes of a run on one host pass models: each publishes what it sends into a ring
/// of `slotCount` model slots in a shared-memory segment of its own, and the message carries only
/// the slot's descriptor.
public struct SharedPayloadPlan: Codable, Sendable, Equatable {
    public var slotCount: Int
    /// Floats per model (a slot's capacity).
    public var modelSize: Int

    public init(slotCount: Int, modelSize: Int) {
        self.slotCount = slotCount
        self.modelSize = modelSize
    }

    enum CodingKeys: String, CodingKey {
        case slotCount = "slot_count"
        case modelSize = "model_size"
    }

    /// Slots a segment needs so that no slot is rewritten while a reader may still use it.
    ///
    /// A node publishes at most `publishesPerRound` models per round (its parameters to its
    /// neighbours and its model to the coordinator on a gathering round: 2; the all-reduce adds
    /// its averaged chunk: 3) and one more when a membership change makes it resend to a new
    /// neighbour. Readers are done with a round-r model (or a part of it that another worker
    /// passed on) once round r is recorded: a neighbour mixes it in its own round r, before it
    /// reports round r, and the coordinator forms x̄ and Ξ² from it before it records round r.
    /// Flow control lets a worker begin a round only while it has completed fewer than
    /// `maxRoundsAhead` rounds beyond the last one recorded, so while any round-r model is in use
    /// its sender publishes in at most rounds r … r + maxRoundsAhead:
    /// publishesPerRound·(maxRoundsAhead + 1) models, plus one resend, plus one spare. A worker
    /// writes a slot again only once the coordinator's acknowledgement says its round is recorded
    /// (the lowest-numbered such slot, so a run touches only as many slots as it has models in
    /// use), and the count above bounds the slots not yet released; the coordinator, told
    /// nothing, rotates through all of them. A reader that nevertheless finds its slot rewritten
    /// fails the run (the seqlock check).
    public static func slotCount(maxRoundsAhead: Int, publishesPerRound: Int = 2) -> Int {
        publishesPerRound * (maxRoundsAhead + 1) + 2
    }

    /// Bytes of one process's segment: a 64-byte header, then per slot a 64-byte header and the
    /// floats, padded to 64 bytes (`SharedSegment.byteCount`).
    public var segmentBytes: Int { 64 + slotCount * ((64 + 4 * modelSize + 63) / 64 * 64) }
}

/// The header checks a node applies to incoming frames before decoding a payload: a node that has
/// not joined a run takes no payloads at all; a node in a run takes only its run's messages, with
/// no payload or exactly a model's worth of floats (dense, or sparse expanding to that length).
public enum FrameAdmission: Sendable, Equatable {
    /// Before the run is known (a worker waiting for its assignment): no payloads.
    case joining
    /// In run `runID`, whose models have `modelSize` floats; a gossip message (`parameters`)
    /// carries `vectorsPerMessage` of them (2 for gradient tracking's x and y).
    case run(runID: UInt64, modelSize: Int, vectorsPerMessage: Int = 1)

    /// The floats a payload of a `kind` message has (at most, for a chunk), nil before a run.
    public func payloadLength(of kind: MessageKind) -> Int? {
        guard case .run(_, let modelSize, let vectors) = self else { return nil }
        return kind == .parameters ? modelSize * vectors : modelSize
    }

    /// Most payloads one message may pass on (one per other worker of a run of the most workers).
    public static let maximumForwardedPayloads = 65_536

    /// Why a frame with this header must be rejected before its payload is read (nil: admit it).
    public func problem(with header: MessageHeader, payloadBytes: Int) -> String? {
        let slots = Int(header.payloadCount)
        switch self {
        case .joining:
            if slots > 0 || payloadBytes > 0 {
                return "a \(header.kind) message with a payload before this node joined a run"
            }
            return nil
        case .run(let runID, _, _):
            let modelSize = payloadLength(of: header.kind)!
            if header.runID != runID && header.kind != .register {
                return "\(header.kind) for run \(header.runID), not this run's \(runID)"
            }
            if header.payloadEncoding == .forwardedSharedMemory {
                let entry = PayloadEncoding.forwardedEntryBytes
                guard header.kind == .allReduceDirectory || header.kind == .allReduceResult else {
                    return
                        "forwarded payloads in a \(header.kind) message (only the all-reduce's directories and results have them)"
                }
                guard slots == 0, payloadBytes > 0, payloadBytes % entry == 0,
                    payloadBytes / entry <= Self.maximumForwardedPayloads
                else {
                    return
                        "a forwarded-payload table of \(payloadBytes) bytes declaring \(slots) floats (expected none, and 1 to \(Self.maximumForwardedPayloads) entries of \(entry) bytes)"
                }
                return nil
            }
            guard slots > 0 else { return payloadBytes > 0 ? "payload frames after a header declaring none" : nil }
            // A chunk of a model (the all-reduce) is at most a model; anything else is one.
            let wrongLength = header.kind.carriesChunk ? slots > modelSize : slots != modelSize
            switch header.payloadEncoding {
            case .forwardedSharedMemory:
                return nil  // checked above
            case .sharedMemory:
                if wrongLength {
                    return "a shared-memory payload of \(slots) floats, not the model's \(modelSize)"
                }
                if payloadBytes != PayloadEncoding.sharedMemoryDescriptorBytes {
                    return
                        "a shared-memory descriptor of \(payloadBytes) bytes, not \(PayloadEncoding.sharedMemoryDescriptorBytes)"
                }
                return nil
            case .dense:
                if wrongLength { return "a payload of \(slots) floats, not the model's \(modelSize)" }
            case .sparse:
                // 1 + 2·k slots for k non-zero values of a model: at most the dense size.
                if slots > 2 * modelSize + 1 {
                    return "a sparse payload of \(slots) slots for a model of \(modelSize) floats"
                }
            }
            if payloadBytes != 4 * slots {
                return "header declares \(slots) floats but the frames hold \(payloadBytes) bytes"
            }
            return nil
        }
    }
}

public enum Received: Sendable {
    case envelope(Envelope)
    case rejected(WireError)
}

public struct TransportError: Error, CustomStringConvertible {
    public var reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { reason }
}

/// What a process found of its host's shared memory (`/dev/shm`), reported at registration: the
/// coordinator passes payloads through shared memory only when every process found the same one.
public struct SharedMemoryReport: Codable, Sendable, Equatable {
    /// Identifies the `/dev/shm` instance (boot id, device and inode): equal on one host (and
    /// one container), different across hosts. Nil when it is unusable.
    public var domain: String?
    /// Bytes free in it.
    public var availableBytes: Int
    /// Why it is unusable (missing, read-only), when `domain` is nil.
    public var problem: String?

    public init(domain: String?, availableBytes: Int, problem: String?) {
        self.domain = domain
        self.availableBytes = availableBytes
        self.problem = problem
    }

    enum CodingKeys: String, CodingKey {
        case domain, problem
        case availableBytes = "available_bytes"
    }
}

/// `--payloads`: how models travel between the processes of a run.
public enum PayloadMode: String, Codable, Sendable, CaseIterable {
    /// Shared memory when every process of the run is on one host, ZeroMQ frames otherwise.
    case auto
    /// Shared memory, or the run fails before its first round saying why not.
    case sharedMemory = "shared-memory"
    /// ZeroMQ frames always.
    case zeromq
}

/// What the coordinator decided about payloads, and why (recorded in the run folder).
public struct PayloadDecision: Codable, Sendable, Equatable {
    public var requested: PayloadMode
    /// `shared-memory` or `zeromq`.
    public var used: PayloadMode
    /// Why ZeroMQ frames were used under `auto` (nil when the request was met as asked).
    public var reason: String?
    /// The segments' shape, when shared memory is used.
    public var plan: SharedPayloadPlan?

    /// The decision for a run: `coordinator` is the coordinator's own report, `workers` the
    /// workers' (by rank), `segmentBytes` one process's segment. Returns a failure reason instead
    /// when `shared-memory` was asked for and cannot be had.
    public static func decide(
        requested: PayloadMode, coordinator: SharedMemoryReport, workers: [SharedMemoryReport?],
        plan: SharedPayloadPlan,
        segmentBytes: Int
    ) -> Result<PayloadDecision, PayloadDecisionError> {
        func fallBack(_ reason: String) -> Result<PayloadDecision, PayloadDecisionError> {
            if requested == .sharedMemory { return .failure(PayloadDecisionError(reason: reason)) }
            return .success(PayloadDecision(requested: requested, used: .zeromq, reason: reason, plan: nil))
        }
        if requested == .zeromq { return .success(PayloadDecision(requested: .zeromq, used: .zeromq, plan: nil)) }
        guard let domain = coordinator.domain else {
            return fallBack("the coordinator's host has no usable /dev/shm (\(coordinator.problem ?? "unknown"))")
        }
        for (rank, report) in workers.enumerated() {
            guard let report else { return fallBack("worker \(rank) did not report its shared memory") }
            guard let workerDomain = report.domain else {
                return fallBack("worker \(rank) has no usable /dev/shm (\(report.problem ?? "unknown"))")
            }
            if workerDomain != domain { return fallBack("worker \(rank) is on another host than the coordinator") }
        }
        let needed = segmentBytes * (workers.count + 1)
        if coordinator.availableBytes < needed {
            return fallBack(
                "/dev/shm has \(coordinator.availableBytes / 1_048_576) MiB free, the run's \(workers.count + 1) segments need \(needed / 1_048_576) MiB"
            )
        }
        return .success(PayloadDecision(requested: requested, used: .sharedMemory, reason: nil, plan: plan))
    }
}

public struct PayloadDecisionError: Error, CustomStringConvertible, Equatable {
    public var reason: String
    public var description: String { "--payloads shared-memory: \(reason)" }
}

/// A node's messages by kind (its main transport; heartbeat threads aside): sent, delivered to it,
/// and delivered but refused by its state machine's checks, so a run's messages can be accounted
/// for: over all nodes, what was sent was delivered, each kind apart.
public struct MessageTally: Sendable, Equatable, Codable {
    /// Counts indexed by the kind's raw value: noting a message is one array increment (it
    /// happens for every message; a dictionary keyed by the kind's printed name cost 4 % of a
    /// many-worker process's time in `perf`).
    private var sentCounts = [Int](repeating: 0, count: MessageTally.slots)
    private var receivedCounts = [Int](repeating: 0, count: MessageTally.slots)
    private var rejectedCounts = [Int](repeating: 0, count: MessageTally.slots)
    /// Frame sequences that did not decode at all (their kind unknown).
    public var undecodable = 0

    private static let slots = Int(MessageKind.allCases.map(\.rawValue).max()!) + 1

    public init() {}

    public var sent: [String: Int] { Self.named(sentCounts) }
    public var received: [String: Int] { Self.named(receivedCounts) }
    /// Of `received`: refused by the node (stale, duplicate, malformed body, foreign run).
    public var rejected: [String: Int] { Self.named(rejectedCounts) }

    public mutating func noteSent(_ kind: MessageKind) { sentCounts[Int(kind.rawValue)] += 1 }
    public mutating func noteReceived(_ kind: MessageKind) { receivedCounts[Int(kind.rawValue)] += 1 }
    public mutating func noteRejected(_ kind: MessageKind) { rejectedCounts[Int(kind.rawValue)] += 1 }

    /// The tallies of several nodes added up.
    public static func + (a: MessageTally, b: MessageTally) -> MessageTally {
        var sum = a
        for i in 0..<slots {
            sum.sentCounts[i] += b.sentCounts[i]
            sum.receivedCounts[i] += b.receivedCounts[i]
            sum.rejectedCounts[i] += b.rejectedCounts[i]
        }
        sum.undecodable += b.undecodable
        return sum
    }

    private static func named(_ counts: [Int]) -> [String: Int] {
        var named: [String: Int] = [:]
        for kind in MessageKind.allCases where counts[Int(kind.rawValue)] != 0 {
            named["\(kind)"] = counts[Int(kind.rawValue)]
        }
        return named
    }

    private enum CodingKeys: String, CodingKey { case sent, received, rejected, undecodable }

    /// As JSON: each of sent, received and rejected an object from the kind's name to its count.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(sent, forKey: .sent)
        try container.encode(received, forKey: .received)
        try container.encode(rejected, forKey: .rejected)
        try container.encode(undecodable, forKey: .undecodable)
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let kinds = Dictionary(uniqueKeysWithValues: MessageKind.allCases.map { ("\($0)", Int($0.rawValue)) })
        func counts(_ key: CodingKeys) throws -> [Int] {
            var counts = [Int](repeating: 0, count: Self.slots)
            for (name, count) in try container.decode([String: Int].self, forKey: key) {
                guard let index = kinds[name] else {
                    throw DecodingError.dataCorruptedError(
                        forKey: key, in: container, debugDescription: "no message kind is named \(name)")
                }
                counts[index] = count
            }
            return counts
        }
        sentCounts = try counts(.sent)
        receivedCounts = try counts(.received)
        rejectedCounts = try counts(.rejected)
        undecodable = try container.decode(Int.self, forKey: .undecodable)
    }
}
