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
}

extension Transport {
    /// Transports that decode no frames (in memory) have nothing to check.
    public func admit(_ admission: FrameAdmission) {}
}

/// The header checks a node applies to incoming frames before decoding a payload: a node that has
/// not joined a run takes no payloads at all; a node in a run takes only its run's messages, with
/// no payload or exactly a model's worth of floats (dense, or sparse expanding to that length).
public enum FrameAdmission: Sendable, Equatable {
    /// Before the run is known (a worker waiting for its assignment): no payloads.
    case joining
    /// In run `runID`, whose models have `modelSize` floats.
    case run(runID: UInt64, modelSize: Int)

    /// Why a frame with this header must be rejected before its payload is read (nil: admit it).
    public func problem(with header: MessageHeader, payloadBytes: Int) -> String? {
        let slots = Int(header.payloadCount)
        switch self {
        case .joining:
            if slots > 0 || payloadBytes > 0 {
                return "a \(header.kind) message with a payload before this node joined a run"
            }
            return nil
        case .run(let runID, let modelSize):
            if header.runID != runID && header.kind != .register {
                return "\(header.kind) for run \(header.runID), not this run's \(runID)"
            }
            guard slots > 0 else { return payloadBytes > 0 ? "payload frames after a header declaring none" : nil }
            switch header.payloadEncoding {
            case .dense:
                if slots != modelSize { return "a payload of \(slots) floats, not the model's \(modelSize)" }
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
