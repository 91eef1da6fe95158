/// A process-local hub of inboxes, for `dsgd simulate` and tests. Delivery is FIFO per inbox and
/// payloads are shared by reference, never copied.
public final class InMemoryHub: @unchecked Sendable {
    fileprivate var inboxes: [String: [Envelope]] = [:]
    private var counter = 0

    public init() {}

    /// A new node with its own inbox.
    public func makeTransport(name: String) -> InMemoryTransport {
        counter += 1
        let endpoint = "inmemory://\(name)#\(counter)"
        inboxes[endpoint] = []
        return InMemoryTransport(hub: self, endpoint: endpoint)
    }

    /// Messages waiting in all inboxes.
    public var pendingCount: Int { inboxes.values.reduce(0) { $0 + $1.count } }
}

public final class InMemoryTransport: Transport {
    private let hub: InMemoryHub
    public let localEndpoint: String
    private var routes: [Peer: String] = [:]
    private var head = 0
    public private(set) var bytesSent = 0

    fileprivate init(hub: InMemoryHub, endpoint: String) {
        self.hub = hub
        localEndpoint = endpoint
    }

    public func connect(_ peer: Peer, endpoint: String) throws {
        guard hub.inboxes[endpoint] != nil else { throw TransportError("no in-memory node at \(endpoint)") }
        routes[peer] = endpoint
    }

    public func send(_ envelope: Envelope, to peer: Peer) throws {
        guard let endpoint = routes[peer] else { throw TransportError("\(localEndpoint): no route to \(peer)") }
        hub.inboxes[endpoint]!.append(envelope)
        bytesSent += MessageHeader.byteCount + envelope.body.count + (envelope.payload?.byteCount ?? 0)
    }

    public func receive(timeoutMilliseconds: Int) throws -> Received? {
        // Single-threaded: waiting cannot make a message appear, so the timeout is ignored.
        guard var queue = hub.inboxes[localEndpoint], head < queue.count else { return nil }
        let envelope = queue[head]
        head += 1
        if head > 64 && head * 2 > queue.count {
            queue.removeFirst(head)
            head = 0
            hub.inboxes[localEndpoint] = queue
        }
        return .envelope(envelope)
    }
}
