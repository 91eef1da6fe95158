/// A process-local hub of inboxes, for `dsgd simulate` and tests. Payloads are shared by
/// reference, never copied. Single-threaded by design.
///
/// Delivery is FIFO per inbox by default. With a `reorderingSeed`, each receive takes the oldest
/// message of a randomly chosen sender: order is kept per sender–receiver pair (as ZeroMQ keeps it
/// per connection) but not across senders, as between real processes.
public final class InMemoryHub: @unchecked Sendable {
    fileprivate struct Inbox {
        var messages: [(sender: String, envelope: Envelope)] = []
        var head = 0

        mutating func pop(using generator: inout SplitMix64Lite?) -> Envelope? {
            guard head < messages.count else { return nil }
            var index = head
            if var random = generator {
                var senders: [String] = []
                for item in messages[head...] where !senders.contains(item.sender) { senders.append(item.sender) }
                let chosen = senders[Int(random.next() % UInt64(senders.count))]
                generator = random
                index = messages[head...].firstIndex { $0.sender == chosen }!
                if index != head {
                    let item = messages.remove(at: index)
                    messages.insert(item, at: head)
                }
            }
            let envelope = messages[head].envelope
            head += 1
            if head > 64 && head * 2 > messages.count {
                messages.removeFirst(head)
                head = 0
            }
            return envelope
        }
    }

    fileprivate var inboxes: [String: Inbox] = [:]
    fileprivate var generator: SplitMix64Lite?
    private var counter = 0
    /// Every message sent, in order, when the hub was made with `recordingSends` (for tests that
    /// check what left a node).
    public fileprivate(set) var sent: [(from: String, to: String, envelope: Envelope)] = []
    fileprivate let recordsSends: Bool
    fileprivate let checksReleases: Bool

    /// `checkingReleases`: every payload a node makes is flagged (its `damage()`, which the
    /// machines check after reading one) when it is read after its maker released its round
    /// (`releasePayloads(through:)`): the shared-memory slot-reuse argument, checked in process.
    public init(reorderingSeed: UInt64? = nil, recordingSends: Bool = false, checkingReleases: Bool = false) {
        generator = reorderingSeed.map(SplitMix64Lite.init(seed:))
        recordsSends = recordingSends
        checksReleases = checkingReleases
    }

    /// A new node with its own inbox.
    public func makeTransport(name: String) -> InMemoryTransport {
        counter += 1
        let endpoint = "inmemory://\(name)#\(counter)"
        inboxes[endpoint] = Inbox()
        return InMemoryTransport(hub: self, endpoint: endpoint)
    }

    /// Messages sent but not yet received, over all inboxes.
    public var pendingCount: Int { inboxes.values.reduce(0) { $0 + $1.messages.count - $1.head } }
}

public final class InMemoryTransport: Transport {
    private let hub: InMemoryHub
    public let localEndpoint: String
    private var routes: [Peer: String] = [:]
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
        hub.inboxes[endpoint]!.messages.append((localEndpoint, envelope))
        if hub.recordsSends { hub.sent.append((localEndpoint, endpoint, envelope)) }
        bytesSent +=
            MessageHeader.byteCount + envelope.body.count + 4 * (envelope.payload?.wireSlotCount ?? 0)
            + PayloadEncoding.forwardedEntryBytes * envelope.forwarded.count
    }

    public func receive(timeoutMilliseconds: Int) throws -> Received? {
        // Single-threaded: waiting cannot make a message appear, so the timeout is ignored.
        hub.inboxes[localEndpoint]!.pop(using: &hub.generator).map { .envelope($0) }
    }

    /// The latest round this node released (nil: none).
    public private(set) var releasedThrough: Int?

    public func releasePayloads(through round: Int) {
        releasedThrough = max(releasedThrough ?? round, round)
    }

    public func makePayload(_ values: UnsafeBufferPointer<Float>, round: Int, readers: PayloadReaders) -> FloatPayload {
        let copy = FloatPayload(copying: values)
        guard hub.checksReleases else { return copy }
        return FloatPayload(
            wrapping: copy.pointer, count: copy.count, release: { withExtendedLifetime(copy) {} },
            integrity: { [weak self] in
                guard let self, let released = self.releasedThrough, released >= round else { return nil }
                return "\(self.localEndpoint): a model of round \(round) read after round \(released) was released"
            })
    }
}

/// A minimal SplitMix64 (Transport does not depend on LearningCore).
struct SplitMix64Lite {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
