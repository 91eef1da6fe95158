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
