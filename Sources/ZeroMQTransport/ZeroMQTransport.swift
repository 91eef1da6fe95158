import CZeroMQ
import Transport

/// `Transport` over ZeroMQ: each node binds one PULL inbox and keeps one PUSH socket per peer.
///
/// Parameters are sent zero-copy: every payload frame is a `zmq_msg_init_data` over the shared,
/// immutable `FloatPayload`, which the frame keeps alive until libzmq's free callback runs, so a
/// model sent to k neighbours is copied once (into the payload), not k times. Models larger than
/// 4 MiB travel as several frames. Receives wrap the libzmq message itself when the payload is a
/// single frame. All calls block only through `zmq_poll` with a timeout, on the caller's own
/// thread (never Swift concurrency's cooperative pool). Linger is finite, so a dead peer cannot
/// hang shutdown.
public final class ZeroMQTransport: Transport {
    private let context: ZeroMQContext
    private let inbox: ZeroMQSocket
    private var outboxes: [Peer: ZeroMQSocket] = [:]
    private var endpoints: [Peer: String] = [:]
    public let localEndpoint: String
    public private(set) var bytesSent = 0
    /// The header checks incoming frames pass before their payload is decoded (nil: any
    /// well-formed frame, until the shell says what it accepts).
    private var admission: FrameAdmission?
    /// Set once the run passes payloads through shared memory (`shareModels`).
    private var shared: SharedPayloads?
    private let lingerMilliseconds: Int32
    /// Send timeout: a peer whose queue stays full this long is treated as gone.
    private let sendTimeoutMilliseconds: Int32

    /// Binds the inbox at `bindEndpoint` (e.g. `tcp://127.0.0.1:*` or `ipc:///tmp/run/w3`).
    /// CURVE keys: when set, the inbox is a CURVE server and every connection a CURVE client.
    private let curve: CurveKeys?

    public init(
        context: ZeroMQContext, bindEndpoint: String, lingerMilliseconds: Int32 = 2_000,
        sendTimeoutMilliseconds: Int32 = 60_000, curve: CurveKeys? = nil
    ) throws {
        self.context = context
        self.curve = curve
        self.lingerMilliseconds = lingerMilliseconds
        self.sendTimeoutMilliseconds = sendTimeoutMilliseconds
        inbox = try ZeroMQSocket(context: context, type: ZMQ_PULL, lingerMilliseconds: 0)
        try inbox.setOption(ZMQ_RCVHWM, Self.highWaterMark)
        try inbox.setOption(ZMQ_BACKLOG, Self.listenBacklog)
        if let curve { try inbox.makeCurveServer(curve) }
        localEndpoint = try inbox.bind(bindEndpoint)
    }

    /// Also listen at an in-process endpoint (`inproc://…`), for nodes of this process that share
    /// the context: messages between them then skip the kernel and the I/O thread.
    public func bindInProcess(_ endpoint: String) throws {
        _ = try inbox.bind(endpoint)
    }

    /// Endpoints of nodes in this process (as they advertise them) mapped to their in-process
    /// endpoints; `connect` to one of them goes in process.
    public var inProcessAliases: [String: String] = [:]

    public func connect(_ peer: Peer, endpoint: String) throws {
        if endpoints[peer] == endpoint { return }
        let socket = try ZeroMQSocket(context: context, type: ZMQ_PUSH, lingerMilliseconds: lingerMilliseconds)
        try socket.setOption(ZMQ_SNDTIMEO, sendTimeoutMilliseconds)
        try socket.setOption(ZMQ_SNDHWM, Self.highWaterMark)
        if let curve { try socket.makeCurveClient(curve) }
        try socket.connect(inProcessAliases[endpoint] ?? endpoint)
        outboxes[peer] = socket
        endpoints[peer] = endpoint
    }

    public func send(_ envelope: Envelope, to peer: Peer) throws {
        guard let socket = outboxes[peer] else { throw TransportError("\(localEndpoint): no route to \(peer)") }
        if !envelope.forwarded.isEmpty {
            guard let shared else {
                throw TransportError(
                    "a \(envelope.header.kind) message passes on payloads, but this run has no shared memory")
            }
            try sendFrames(
                envelope.firstFrame, try shared.forwardedFrame(for: envelope.forwarded), to: peer, socket: socket)
            return
        }
        if let shared, let payload = envelope.payload {
            try sendShared(envelope, payload: payload, through: shared, to: peer, socket: socket)
            return
        }
        var envelope = envelope
        if let payload = envelope.payload, SparsePayload.isWorthwhile(payload) {
            // Mostly zeros (a sparse shared part, masked personal layers): send the sparse form.
            envelope = Envelope(header: envelope.header, body: envelope.body, payload: SparsePayload.encode(payload))
            envelope.header.payloadEncoding = .sparse
        }
        let first = envelope.firstFrame
        let ranges = envelope.payload.map { Envelope.payloadFrameRanges(count: $0.count) } ?? []
        // Heartbeats and aborts are best effort: they never wait for a peer that is not there.
        let bestEffort = envelope.header.kind == .heartbeat || envelope.header.kind == .abort
        let firstResult = first.withUnsafeBytes {
            zmq_send(
                socket.handle, $0.baseAddress, $0.count,
                (ranges.isEmpty ? 0 : ZMQ_SNDMORE) | (bestEffort ? ZMQ_DONTWAIT : 0))
        }
        guard firstResult >= 0 else { throw sendError(to: peer) }
        if let payload = envelope.payload {
            for (index, range) in ranges.enumerated() {
                var message = zmq_msg_t()
                let hint = Unmanaged.passRetained(payload).toOpaque()
                let data = UnsafeMutableRawPointer(mutating: payload.pointer + range.lowerBound)
                guard zmq_msg_init_data(&message, data, range.count * 4, releasePayloadReference, hint) == 0 else {
                    Unmanaged<FloatPayload>.fromOpaque(hint).release()
                    throw ZeroMQError.last("zmq_msg_init_data")
                }
                let more = index + 1 < ranges.count ? ZMQ_SNDMORE : 0
                if zmq_msg_send(&message, socket.handle, more) < 0 {
                    zmq_msg_close(&message)  // runs the free callback
                    throw sendError(to: peer)
                }
            }
        }
        bytesSent += first.count + (envelope.payload?.byteCount ?? 0)
    }

    /// A payload in shared memory: the header, then the slot's 32-byte descriptor.
    private func sendShared(
        _ envelope: Envelope, payload: FloatPayload, through shared: SharedPayloads, to peer: Peer,
        socket: ZeroMQSocket
    ) throws {
        var envelope = envelope
        envelope.header.payloadEncoding = .sharedMemory
        try sendFrames(
            envelope.firstFrame, shared.descriptorFrame(for: payload, round: envelope.header.round), to: peer,
            socket: socket)
    }

    /// Sends the header frame and one small frame after it (a descriptor, or a table of them).
    private func sendFrames(_ first: [UInt8], _ second: [UInt8], to peer: Peer, socket: ZeroMQSocket) throws {
        let firstResult = first.withUnsafeBytes { zmq_send(socket.handle, $0.baseAddress, $0.count, ZMQ_SNDMORE) }
        guard firstResult >= 0 else { throw sendError(to: peer) }
        guard second.withUnsafeBytes({ zmq_send(socket.handle, $0.baseAddress, $0.count, 0) }) >= 0 else {
            throw sendError(to: peer)
        }
        bytesSent += first.count + second.count
    }

    public func shareModels(_ plan: SharedPayloadPlan, runID: UInt64, rank: Int?) throws {
        guard shared == nil else { return }
        shared = try SharedPayloads(plan: plan, runID: runID, rank: rank)
    }

    public func releasePayloads(through round: Int) {
        shared?.release(through: Int64(round))
    }

    public func makePayload(_ values: UnsafeBufferPointer<Float>, round: Int, readers: PayloadReaders) -> FloatPayload {
        shared?.publish(values, round: Int64(round), fromLastSlot: readers == .coordinator)
            ?? FloatPayload(copying: values)
    }

    /// This node's shared-memory segment, once `shareModels` made it.
    public var sharedSegmentName: String? { shared?.segmentName }

    private func sendError(to peer: Peer) -> Error {
        let code = zmq_errno()
        if code == EAGAIN {
            return TransportError(
                "send to \(peer) at \(endpoints[peer] ?? "?") timed out after \(sendTimeoutMilliseconds) ms")
        }
        return ZeroMQError(call: "zmq_send to \(peer)", code: code)
    }

    public func admit(_ admission: FrameAdmission) { self.admission = admission }

    /// Queued frames per connection, each way, at most (libzmq's high-water marks): flow control
    /// keeps a run's queues far below it (a few rounds of a few frames per link); a peer whose
    /// queue stays full for the send timeout is treated as gone, so no queue grows without bound.
    public static let highWaterMark: Int32 = 1_024

    /// Pending TCP connections an inbox queues before the kernel drops new ones (libzmq's default
    /// is 100; the kernel caps it at net.core.somaxconn). Right after the assignments every worker
    /// opens its heartbeat connection to the coordinator at once: with 256 workers the default
    /// queue overflowed (`nstat` TcpExtListenOverflows), the dropped connections waited out TCP's
    /// SYN retries (1 s, 3 s, 7 s), and their workers were declared dead before the first round.
    public static let listenBacklog: Int32 = 4_096

    /// Waits up to `timeoutMilliseconds` until any of `transports` has a message waiting (one
    /// thread driving several nodes: a process that runs several workers); returns the indices of
    /// those that have.
    public static func waitForInput(_ transports: [ZeroMQTransport], timeoutMilliseconds: Int) throws -> [Int] {
        var items = transports.map {
            zmq_pollitem_t(socket: $0.inbox.handle, fd: 0, events: Int16(ZMQ_POLLIN), revents: 0)
        }
        let result = zmq_poll(&items, Int32(items.count), timeoutMilliseconds)
        if result < 0 {
            if zmq_errno() == EINTR { return [] }
            throw ZeroMQError.last("zmq_poll")
        }
        return items.indices.filter { items[$0].revents & Int16(ZMQ_POLLIN) != 0 }
    }

    public func receive(timeoutMilliseconds: Int) throws -> Received? {
        guard try inbox.pollIn(timeoutMilliseconds: timeoutMilliseconds) else { return nil }
        var frames: [ZeroMQMessage] = []
        while true {
            let frame = ZeroMQMessage()
            guard zmq_msg_recv(frame.pointer, inbox.handle, ZMQ_DONTWAIT) >= 0 else {
                if zmq_errno() == EAGAIN && frames.isEmpty { return nil }
                throw ZeroMQError.last("zmq_msg_recv")
            }
            frames.append(frame)
            if zmq_msg_more(frame.pointer) == 0 { break }
        }
        do {
            return .envelope(try Self.decode(frames, admission: admission, shared: shared))
        } catch let error as WireError {
            return .rejected(error)
        } catch {
            throw error
        }
    }

    /// Decodes a frame sequence, checking that the payload frames hold exactly the declared floats.
    /// A sparse payload is expanded to its dense form here, so the rest of the program sees dense
    /// payloads only.
    static func decode(_ frames: [ZeroMQMessage], admission: FrameAdmission? = nil, shared: SharedPayloads? = nil)
        throws -> Envelope
    {
        // The header first: version, kind, run id and the declared sizes are checked against what
        // this node accepts before any payload is copied, expanded or allocated.
        let (header, body) = try frames[0].withUnsafeBytes { try Envelope.decodeFirstFrame($0) }
        if let admission,
            let problem = admission.problem(with: header, payloadBytes: frames.dropFirst().reduce(0) { $0 + $1.count })
        {
            throw WireError.malformed(problem)
        }
        if header.payloadEncoding == .forwardedSharedMemory {
            guard let shared else {
                throw WireError.malformed(
                    "payloads passed on in shared memory, but this run passes payloads as ZeroMQ frames")
            }
            guard frames.count == 2 else {
                throw WireError.malformed("a forwarded-payload message in \(frames.count - 1) frames, not one table")
            }
            let forwarded = try frames[1].withUnsafeBytes { try shared.forwardedPayloads(frame: $0) }
            return Envelope(header: header, body: body, forwarded: forwarded)
        }
        if header.payloadEncoding == .sharedMemory {
            guard let shared else {
                throw WireError.malformed("a shared-memory payload, but this run passes payloads as ZeroMQ frames")
            }
            guard frames.count == 2 else {
                throw WireError.malformed("a shared-memory payload in \(frames.count - 1) frames, not one descriptor")
            }
            var envelope = Envelope(header: header, body: body)
            envelope.payload = try frames[1].withUnsafeBytes {
                try shared.payload(from: header.sender, frame: $0, count: Int(header.payloadCount))
            }
            envelope.header.payloadCount = header.payloadCount
            envelope.header.payloadEncoding = .dense
            return envelope
        }
        var envelope = try decodeFrames(frames)
        if envelope.header.payloadEncoding == .sparse {
            guard let slots = envelope.payload else { throw WireError.malformed("sparse encoding without a payload") }
            if let modelSize = admission?.payloadLength(of: header.kind), slots.count > 0,
                header.kind.carriesChunk
                    ? Int(slots.buffer[0].bitPattern) > modelSize : Int(slots.buffer[0].bitPattern) != modelSize
            {
                throw WireError.malformed(
                    "a sparse payload expanding to \(slots.buffer[0].bitPattern) floats, not the model's \(modelSize)")
            }
            let dense = try withExtendedLifetime(slots) { try SparsePayload.decode(slots.buffer) }
            envelope.payload = dense
            envelope.header.payloadCount = UInt32(dense.count)
            envelope.header.payloadEncoding = .dense
        }
        return envelope
    }

    private static func decodeFrames(_ frames: [ZeroMQMessage]) throws -> Envelope {
        let (header, body) = try frames[0].withUnsafeBytes { try Envelope.decodeFirstFrame($0) }
        let payloadFrames = frames.dropFirst()
        let declared = Int(header.payloadCount)
        let received = payloadFrames.reduce(0) { $0 + $1.count }
        guard received == declared * 4 else {
            throw WireError.malformed(
                "header declares \(declared) floats (\(declared * 4) bytes) but the payload frames hold \(received) bytes"
            )
        }
        var envelope = Envelope(header: header, body: body)
        envelope.header.payloadCount = header.payloadCount

        if declared > 0 {
            if payloadFrames.count == 1, let frame = payloadFrames.first, let data = frame.data,
                Int(bitPattern: data) % MemoryLayout<Float>.alignment == 0
            {
                let pointer = UnsafePointer(data.assumingMemoryBound(to: Float.self))
                envelope.payload = FloatPayload(wrapping: pointer, count: declared) { withExtendedLifetime(frame) {} }
            } else {
                let storage = UnsafeMutablePointer<Float>.allocate(capacity: declared)
                var offset = 0
                for frame in payloadFrames {
                    frame.withUnsafeBytes {
                        UnsafeMutableRawPointer(storage).advanced(by: offset).copyMemory(
                            from: $0.baseAddress!, byteCount: $0.count)
                    }
                    offset += frame.count
                }
                envelope.payload = FloatPayload(wrapping: UnsafePointer(storage), count: declared) {
                    storage.deallocate()
                }
            }
        }
        return envelope
    }
}
