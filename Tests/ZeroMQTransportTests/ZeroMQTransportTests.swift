import CZeroMQ
import Foundation
import Synchronization
import Transport
import XCTest

@testable import ZeroMQTransport

/// Loopback only. Every receive has a timeout, so a lost message fails the test instead of hanging it.
final class ZeroMQTransportTests: XCTestCase {
    private func receiveEnvelope(_ transport: ZeroMQTransport, file: StaticString = #filePath, line: UInt = #line)
        throws -> Envelope
    {
        for _ in 0..<50 {
            if case .envelope(let envelope) = try transport.receive(timeoutMilliseconds: 100) { return envelope }
        }
        XCTFail("nothing arrived within 5 s", file: file, line: line)
        throw TransportError("timeout")
    }

    func testSmallAndMultiFrameMessages_ArriveIntactAndInOrder() throws {
        let context = try ZeroMQContext()
        let a = try ZeroMQTransport(context: context, bindEndpoint: "tcp://127.0.0.1:*")
        let b = try ZeroMQTransport(context: context, bindEndpoint: "tcp://127.0.0.1:*")
        try a.connect(.worker(1), endpoint: b.localEndpoint)
        let big = (0..<2_500_000).map { Float($0) * 0.5 }  // 10 MB: three frames
        try a.send(
            Envelope(header: MessageHeader(kind: .start, runID: 3, sender: -1), body: Array("hi".utf8)), to: .worker(1))
        try a.send(
            Envelope(
                header: MessageHeader(kind: .parameters, runID: 3, round: 4, sender: 0),
                payload: FloatPayload(copying: big)), to: .worker(1))
        let first = try receiveEnvelope(b)
        XCTAssertEqual(first.header.kind, .start)
        XCTAssertEqual(first.body, Array("hi".utf8))
        XCTAssertNil(first.payload)
        let second = try receiveEnvelope(b)
        XCTAssertEqual(second.header.round, 4)
        XCTAssertEqual(second.payload?.count, big.count)
        XCTAssertEqual(second.payload?.array, big)
        XCTAssertGreaterThan(a.bytesSent, big.count * 4)
    }

    /// A payload that is mostly zeros travels in the sparse form and arrives dense, bit for bit
    /// (−0.0 included), for about the bytes of its non-zero values.
    func testSparsePayload_TravelsSmallAndArrivesIdentical() throws {
        let context = try ZeroMQContext()
        let a = try ZeroMQTransport(context: context, bindEndpoint: "tcp://127.0.0.1:*")
        let b = try ZeroMQTransport(context: context, bindEndpoint: "tcp://127.0.0.1:*")
        try a.connect(.worker(1), endpoint: b.localEndpoint)
        var values = [Float](repeating: 0, count: 100_000)
        for i in stride(from: 0, to: values.count, by: 10) { values[i] = Float(i) * 0.25 - 7 }
        values[5] = -0.0
        let payload = FloatPayload(copying: values)
        XCTAssertEqual(payload.nonZeroCount, 10_001)
        try a.send(
            Envelope(header: MessageHeader(kind: .parameters, runID: 3, round: 1, sender: 0), payload: payload),
            to: .worker(1))
        let received = try receiveEnvelope(b)
        XCTAssertEqual(received.header.payloadEncoding, .dense)
        XCTAssertEqual(received.header.payloadCount, 100_000)
        XCTAssertEqual(received.payload?.array.map(\.bitPattern), values.map(\.bitPattern))
        XCTAssertLessThan(a.bytesSent, 4 * (1 + 2 * 10_001) + 200)
    }

    func testIPC_Works() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("dsgd-ipc-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let context = try ZeroMQContext()
        let a = try ZeroMQTransport(context: context, bindEndpoint: "tcp://127.0.0.1:*")
        let b = try ZeroMQTransport(context: context, bindEndpoint: "ipc://\(directory.path)/b")
        try a.connect(.coordinator, endpoint: b.localEndpoint)
        try a.send(
            Envelope(header: MessageHeader(kind: .ready, runID: 9, sender: 2), payload: FloatPayload(copying: [1, 2])),
            to: .coordinator)
        XCTAssertEqual(try receiveEnvelope(b).payload?.array, [1, 2])
    }

    func testMalformedFrames_AreRejectedNotThrown() throws {
        let context = try ZeroMQContext()
        let b = try ZeroMQTransport(context: context, bindEndpoint: "tcp://127.0.0.1:*")
        let raw = try ZeroMQSocket(context: context, type: ZMQ_PUSH_VALUE, lingerMilliseconds: 0)
        try raw.connect(b.localEndpoint)
        // A header that declares 3 floats followed by 8 bytes of payload.
        let header = Envelope(
            header: MessageHeader(kind: .parameters, runID: 1, sender: 0), payload: FloatPayload(copying: [1, 2, 3])
        ).firstFrame
        try rawSend(raw, [header, [UInt8](repeating: 0, count: 8)])
        try rawSend(raw, [Array("garbage".utf8)])
        var reasons: [String] = []
        for _ in 0..<50 where reasons.count < 2 {
            if case .rejected(let error) = try b.receive(timeoutMilliseconds: 100) { reasons.append("\(error)") }
        }
        XCTAssertEqual(reasons.count, 2)
        XCTAssertTrue(reasons[0].contains("declares 3 floats"), reasons.first ?? "")
        XCTAssertTrue(reasons[1].contains("shorter"), reasons.last ?? "")
    }
}

let ZMQ_PUSH_VALUE = ZMQ_PUSH

func rawSend(_ socket: ZeroMQSocket, _ frames: [[UInt8]]) throws {
    for (index, frame) in frames.enumerated() {
        let flags = index + 1 < frames.count ? ZMQ_SNDMORE : 0
        let result = frame.withUnsafeBytes { zmq_send(socket.handle, $0.baseAddress, $0.count, flags) }
        if result < 0 { throw ZeroMQError.last("zmq_send") }
    }
}

final class FrameAdmissionTests: XCTestCase {
    private func receiveEnvelope(_ transport: ZeroMQTransport) throws -> Envelope {
        for _ in 0..<50 {
            if case .envelope(let envelope) = try transport.receive(timeoutMilliseconds: 100) { return envelope }
        }
        XCTFail("nothing arrived within 5 s")
        throw TransportError("timeout")
    }

    /// Sends raw frames from a bare PUSH socket (what a hostile peer can do).
    private func sendRaw(_ frames: [[UInt8]], to endpoint: String, context: ZeroMQContext) throws {
        let socket = try ZeroMQSocket(context: context, type: ZMQ_PUSH, lingerMilliseconds: 2_000)
        try socket.connect(endpoint)
        for (index, frame) in frames.enumerated() {
            _ = frame.withUnsafeBytes {
                zmq_send(socket.handle, $0.baseAddress, $0.count, index + 1 < frames.count ? ZMQ_SNDMORE : 0)
            }
        }
    }

    private func receiveRejection(_ transport: ZeroMQTransport) throws -> String? {
        for _ in 0..<50 {
            switch try transport.receive(timeoutMilliseconds: 100) {
            case .rejected(let error): return "\(error)"
            case .envelope: return nil
            case .none: continue
            }
        }
        return nil
    }

    /// A 38-byte frame declaring a sparse payload whose dense length is 2³² − 1 used to make the
    /// receiver allocate and zero 16 GiB before the run id was checked. The header is now checked
    /// first: a node joining a run takes no payloads; a node in a run takes only its run's frames
    /// with exactly its model's size, dense or sparse.
    func testHostileSparseFrame_IsRejectedBeforeAnyAllocation() throws {
        let context = try ZeroMQContext()
        let node = try ZeroMQTransport(context: context, bindEndpoint: "tcp://127.0.0.1:*")
        func frames(runID: UInt64, encoding: PayloadEncoding, slots: [UInt32]) -> [[UInt8]] {
            var envelope = Envelope(header: MessageHeader(kind: .parameters, runID: runID, round: 0, sender: 0))
            envelope.header.payloadCount = UInt32(slots.count)
            envelope.header.payloadEncoding = encoding
            let first = envelope.firstFrame
            let payload = slots.withUnsafeBytes { Array($0) }
            return [first, payload]
        }
        let hostile = frames(runID: 9, encoding: .sparse, slots: [UInt32.max])
        node.admit(.joining)
        try sendRaw(hostile, to: node.localEndpoint, context: context)
        XCTAssertTrue(try receiveRejection(node)?.contains("before this node joined a run") ?? false)
        node.admit(.run(runID: 9, modelSize: 100))
        try sendRaw(hostile, to: node.localEndpoint, context: context)
        XCTAssertTrue(
            try receiveRejection(node)?.contains("expanding to 4294967295 floats, not the model's 100") ?? false)
        try sendRaw(frames(runID: 8, encoding: .sparse, slots: [100]), to: node.localEndpoint, context: context)
        XCTAssertTrue(try receiveRejection(node)?.contains("for run 8, not this run's 9") ?? false)
        try sendRaw(frames(runID: 9, encoding: .dense, slots: [0, 0, 0]), to: node.localEndpoint, context: context)
        XCTAssertTrue(try receiveRejection(node)?.contains("not the model's 100") ?? false)
        // A well-formed sparse model of the run still arrives.
        let sparse = [UInt32(100), 7, Float(2.5).bitPattern]
        try sendRaw(frames(runID: 9, encoding: .sparse, slots: sparse), to: node.localEndpoint, context: context)
        let envelope = try receiveEnvelope(node)
        XCTAssertEqual(envelope.payload?.count, 100)
        XCTAssertEqual(envelope.payload?.array[7], 2.5)
    }
}

final class KeyHandlingTests: XCTestCase {
    /// Secret keys are created 0600 (never world-readable, even briefly: the temporary file has
    /// that mode from its creation), public files 0644, with no temporary file left behind; a
    /// secret key that group or others may read is refused at start, naming the file.
    func testKeyFiles_ModesAtCreation_AndLooseSecretsRefused() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("dsgd-keys-\(UUID())")
        defer { try? FileManager.default.removeItem(at: directory) }
        let previous = umask(0o000)  // even with a permissive umask
        defer { umask(previous) }
        try CurveKeys.generate(in: directory)
        func mode(_ name: String) throws -> Int {
            (try FileManager.default.attributesOfItem(atPath: directory.appendingPathComponent(name).path)[
                .posixPermissions] as! NSNumber).intValue
        }
        XCTAssertEqual(try mode("server.key"), 0o600)
        XCTAssertEqual(try mode("client.key"), 0o600)
        XCTAssertEqual(try mode("server.pub"), 0o644)
        XCTAssertEqual(
            try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted(),
            ["authorized_clients", "client.key", "client.pub", "server.key", "server.pub"])
        XCTAssertNoThrow(try CurveKeys.load(from: directory))
        let secret = directory.appendingPathComponent("server.key").path
        for loose in [0o640, 0o604, 0o660] {
            XCTAssertEqual(chmod(secret, mode_t(loose)), 0)
            XCTAssertThrowsError(try CurveKeys.load(from: directory)) {
                XCTAssertTrue("\($0)".contains("\(secret): a secret key readable or writable"), "\($0)")
                XCTAssertTrue("\($0)".contains("chmod 600"), "\($0)")
            }
        }
    }

    /// An interrupted ZAP handler (a signal delivered to its thread: EINTR) used to return, after
    /// which libzmq admitted every client of the CURVE server. It now retries: after the signal an
    /// authorised client still gets through and an unauthorised one is still refused.
    func testZAPHandler_Interrupted_KeepsRefusingUnauthorisedClients() throws {
        let context = try ZeroMQContext()
        let server = try CurveKeys.keyPair()
        let (good, bad) = (try CurveKeys.keyPair(), try CurveKeys.keyPair())
        func keys(_ client: (public: String, secret: String)) -> CurveKeys {
            CurveKeys(
                serverPublic: server.public, serverSecret: server.secret, clientPublic: client.public,
                clientSecret: client.secret, authorizedClients: [good.public])
        }
        let refusals = Atomic<Int>(0)
        let authenticator = try ZAPAuthenticator(context: context, authorized: [good.public]) { _ in
            refusals.add(1, ordering: .relaxed)
        }
        let inbox = try ZeroMQTransport(context: context, bindEndpoint: "tcp://127.0.0.1:*", curve: keys(good))
        func arrives(from client: (public: String, secret: String), tag: Int64) throws -> Bool {
            let sender = try ZeroMQTransport(
                context: context, bindEndpoint: "tcp://127.0.0.1:*", lingerMilliseconds: 0, curve: keys(client))
            try sender.connect(.coordinator, endpoint: inbox.localEndpoint)
            try sender.send(
                Envelope(header: MessageHeader(kind: .heartbeat, runID: 1, round: tag, sender: 0)), to: .coordinator)
            for _ in 0..<15 {
                if case .envelope(let envelope) = try inbox.receive(timeoutMilliseconds: 100),
                    envelope.header.round == tag
                {
                    return true
                }
            }
            return false
        }
        XCTAssertTrue(try arrives(from: good, tag: 1))
        XCTAssertFalse(try arrives(from: bad, tag: 2))
        // A no-op handler without SA_RESTART, so the blocked receive returns EINTR.
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { _ in }
        action.sa_flags = 0
        sigaction(SIGUSR1, &action, nil)
        let thread = try XCTUnwrap(authenticator.thread)
        for _ in 0..<3 {
            pthread_kill(thread, SIGUSR1)
            usleep(50_000)
        }
        XCTAssertTrue(try arrives(from: good, tag: 3), "the handler still answers")
        XCTAssertFalse(try arrives(from: bad, tag: 4), "an unauthorised client is still refused")
        XCTAssertGreaterThan(refusals.load(ordering: .relaxed), 0)
    }

    /// The ZAP handler fails closed: one that cannot start (here, a second one in the same
    /// context, whose endpoint is taken) is an error, not a silent pass.
    func testZAPHandler_ThatCannotStart_IsAnError() throws {
        let context = try ZeroMQContext()
        let first = try ZAPAuthenticator(context: context, authorized: []) { _ in }
        XCTAssertThrowsError(try ZAPAuthenticator(context: context, authorized: []) { _ in }) {
            XCTAssertTrue("\($0)".contains("the ZAP handler could not start"), "\($0)")
        }
        withExtendedLifetime(first) {}
    }
}

final class QueueBoundTests: XCTestCase {
    /// A peer that never reads: the sender's queue stops at the high-water marks and the send
    /// times out with a clear error, instead of buffering without bound (the old marks were 0:
    /// unlimited, so the timeout could never fire).
    func testStalledReceiver_SendTimesOutAtTheHighWaterMark() throws {
        let context = try ZeroMQContext()
        let sender = try ZeroMQTransport(
            context: context, bindEndpoint: "tcp://127.0.0.1:*", sendTimeoutMilliseconds: 300)
        let stalled = try ZeroMQTransport(context: context, bindEndpoint: "tcp://127.0.0.1:*")
        try sender.connect(.worker(1), endpoint: stalled.localEndpoint)
        let payload = FloatPayload(copying: [Float](repeating: 1, count: 4_096))  // 16 KB
        var sent = 0
        var failure: String?
        while sent < 20_000 {
            do {
                try sender.send(
                    Envelope(header: MessageHeader(kind: .parameters, runID: 1, sender: 0), payload: payload),
                    to: .worker(1))
                sent += 1
            } catch {
                failure = "\(error)"
                break
            }
        }
        XCTAssertTrue(failure?.contains("timed out after 300 ms") ?? false, "\(failure ?? "no failure") after \(sent)")
        // Two queues of 1,024 messages (2 frames each) plus the kernel's socket buffers.
        XCTAssertLessThan(sent, 4 * Int(ZeroMQTransport.highWaterMark) + 2_000)
        withExtendedLifetime(stalled) {}
    }
}
