import CZeroMQ
import Foundation
import SharedMemory
import Transport
import XCTest

@testable import ZeroMQTransport

/// Payloads by reference between the processes of one host: what arrives is the sender's slot in
/// place, one model sent to several peers is published once, a slot rewritten before its reader
/// is done is reported naming both rounds, and frames that do not fit the run are rejected.
final class SharedPayloadTests: XCTestCase {
    private func runID() -> UInt64 { UInt64.random(in: 1...UInt64.max) }

    private func receive(_ transport: ZeroMQTransport, file: StaticString = #filePath, line: UInt = #line) throws
        -> Received
    {
        for _ in 0..<50 {
            if let received = try transport.receive(timeoutMilliseconds: 100) { return received }
        }
        XCTFail("nothing arrived within 5 s", file: file, line: line)
        throw TransportError("timeout")
    }

    /// Two nodes of a fresh run passing payloads through shared memory, the sender connected to
    /// the reader, which admits the run's frames (the context keeps their sockets alive).
    private func senderAndReader(_ plan: SharedPayloadPlan, senderRank: Int, readerRank: Int) throws -> (
        UInt64, ZeroMQTransport, ZeroMQTransport, ZeroMQContext
    ) {
        let id = runID()
        let context = try ZeroMQContext()
        let sender = try ZeroMQTransport(context: context, bindEndpoint: "tcp://127.0.0.1:*")
        let reader = try ZeroMQTransport(context: context, bindEndpoint: "tcp://127.0.0.1:*")
        try sender.shareModels(plan, runID: id, rank: senderRank)
        try reader.shareModels(plan, runID: id, rank: readerRank)
        reader.admit(.run(runID: id, modelSize: plan.modelSize))
        try sender.connect(.worker(readerRank), endpoint: reader.localEndpoint)
        return (id, sender, reader, context)
    }

    private func envelope(_ received: Received, file: StaticString = #filePath, line: UInt = #line) throws -> Envelope {
        guard case .envelope(let envelope) = received else {
            XCTFail("rejected: \(received)", file: file, line: line)
            throw TransportError("rejected")
        }
        return envelope
    }

    /// Three nodes of one run (workers 0 and 1, the coordinator): worker 0 sends one model to both
    /// others; each receives the values bit for bit, read in place from worker 0's segment, and
    /// the model was published once (one slot used); the frames carry a 32-byte descriptor, not
    /// the model.
    func testModel_ArrivesInPlace_PublishedOnceForEveryPeer() throws {
        let id = runID()
        let plan = SharedPayloadPlan(slotCount: 4, modelSize: 50_000)
        let context = try ZeroMQContext()
        let sender = try ZeroMQTransport(context: context, bindEndpoint: "tcp://127.0.0.1:*")
        let neighbour = try ZeroMQTransport(context: context, bindEndpoint: "tcp://127.0.0.1:*")
        let coordinator = try ZeroMQTransport(context: context, bindEndpoint: "tcp://127.0.0.1:*")
        for (transport, rank) in [(sender, 0), (neighbour, 1), (coordinator, nil)] as [(ZeroMQTransport, Int?)] {
            try transport.shareModels(plan, runID: id, rank: rank)
            transport.admit(.run(runID: id, modelSize: plan.modelSize))
        }
        XCTAssertEqual(sender.sharedSegmentName, SharedSegment.name(runID: id, rank: 0))
        XCTAssertEqual(coordinator.sharedSegmentName, SharedSegment.name(runID: id, rank: -1))
        XCTAssertEqual(
            SharedSegment.byteCount(slotCount: plan.slotCount, slotCapacity: plan.modelSize), plan.segmentBytes)
        try sender.connect(.worker(1), endpoint: neighbour.localEndpoint)
        try sender.connect(.coordinator, endpoint: coordinator.localEndpoint)
        var values = (0..<plan.modelSize).map { Float($0) * 0.125 - 3 }
        values[7] = -0.0
        values[8] = .leastNonzeroMagnitude
        let payload = FloatPayload(copying: values)
        try sender.send(
            Envelope(header: MessageHeader(kind: .parameters, runID: id, round: 5, sender: 0), payload: payload),
            to: .worker(1))
        try sender.send(
            Envelope(header: MessageHeader(kind: .metrics, runID: id, round: 6, sender: 0), payload: payload),
            to: .coordinator)
        XCTAssertLessThan(sender.bytesSent, 2 * (MessageHeader.byteCount + 32) + 1, "descriptors, not models")
        let atNeighbour = try envelope(receive(neighbour))
        let atCoordinator = try envelope(receive(coordinator))
        for received in [atNeighbour, atCoordinator] {
            let model = try XCTUnwrap(received.payload)
            XCTAssertTrue(model.isBorrowed)
            XCTAssertEqual(model.array.map(\.bitPattern), values.map(\.bitPattern))
            XCTAssertNil(model.damage())
            XCTAssertEqual(received.header.payloadEncoding, .dense)
            XCTAssertEqual(Int(received.header.payloadCount), plan.modelSize)
        }
        // Both point at the same memory: the one slot worker 0 published into.
        XCTAssertNotEqual(atNeighbour.payload!.pointer, payload.pointer)
        let reader = try SharedSegment.open(runID: id, rank: 0, slotCount: plan.slotCount, slotCapacity: plan.modelSize)
        let firstSlot = try reader.values(SlotDescriptor(slot: 0, sequence: 2, count: plan.modelSize, round: 5))
        XCTAssertEqual(firstSlot.map(\.bitPattern), values.map(\.bitPattern))
        XCTAssertThrowsError(
            try reader.values(SlotDescriptor(slot: 1, sequence: 2, count: plan.modelSize, round: 5)),
            "a second slot was written: the model was published twice")
    }

    /// A reader that keeps a model while its sender publishes a whole ring more: `damage()` names
    /// both rounds. A descriptor already stale on arrival (a message no one needs any more) is
    /// delivered with its damage set, so it fails whoever uses it and costs nothing if dropped.
    func testRewrittenSlot_IsReported_NamingBothRounds() throws {
        let plan = SharedPayloadPlan(slotCount: 3, modelSize: 1_000)
        let (id, sender, reader, _) = try senderAndReader(plan, senderRank: 2, readerRank: 0)
        func send(round: Int64) throws {
            let payload = FloatPayload(copying: [Float](repeating: Float(round), count: plan.modelSize))
            try sender.send(
                Envelope(
                    header: MessageHeader(kind: .parameters, runID: id, round: round, sender: 2), payload: payload),
                to: .worker(0))
        }
        try send(round: 10)
        let held = try XCTUnwrap(try envelope(receive(reader)).payload)
        XCTAssertNil(held.damage())
        XCTAssertEqual(held.buffer[0], 10)
        for round in Int64(11)...13 { try send(round: round) }  // the fourth model reuses round 10's slot
        let damage = try XCTUnwrap(held.damage(), "an overwritten slot went unnoticed")
        XCTAssertTrue(damage.contains("round 10") && damage.contains("round 13"), damage)
        // Round 11 was overwritten too before it was received (14 reuses its slot), so its
        // descriptor arrives stale: delivered, flagged, and finite as far as a finiteness check
        // can tell (the damage check decides).
        try send(round: 14)
        let stale = try XCTUnwrap(try envelope(receive(reader)).payload)
        let staleDamage = try XCTUnwrap(stale.damage(), "a stale descriptor arrived unflagged")
        XCTAssertTrue(staleDamage.contains("round 11") && staleDamage.contains("round 14"), staleDamage)
        XCTAssertTrue(stale.isFinite)
        for intact in 12...14 {
            let payload = try XCTUnwrap(try envelope(receive(reader)).payload)
            XCTAssertNil(payload.damage(), "round \(intact)")
            XCTAssertEqual(payload.buffer[0], Float(intact))
        }
    }

    /// A shared-memory frame where the run passes ZeroMQ frames, a descriptor of the wrong size or
    /// length, or one naming a segment that does not exist: each rejected, none read.
    func testMisfitDescriptors_AreRejected() throws {
        let id = runID()
        let plan = SharedPayloadPlan(slotCount: 2, modelSize: 64)
        let context = try ZeroMQContext()
        let plain = try ZeroMQTransport(context: context, bindEndpoint: "tcp://127.0.0.1:*")
        plain.admit(.run(runID: id, modelSize: 64))
        let shared = try ZeroMQTransport(context: context, bindEndpoint: "tcp://127.0.0.1:*")
        try shared.shareModels(plan, runID: id, rank: 1)
        shared.admit(.run(runID: id, modelSize: 64))
        func send(to transport: ZeroMQTransport, count: UInt32, sender: Int32, descriptor: [UInt8]) throws {
            let raw = try ZeroMQSocket(context: context, type: ZMQ_PUSH, lingerMilliseconds: 1_000)
            try raw.connect(transport.localEndpoint)
            var envelope = Envelope(header: MessageHeader(kind: .parameters, runID: id, round: 0, sender: sender))
            envelope.header.payloadCount = count
            envelope.header.payloadEncoding = .sharedMemory
            let first = envelope.firstFrame
            _ = first.withUnsafeBytes { zmq_send(raw.handle, $0.baseAddress, $0.count, ZMQ_SNDMORE) }
            _ = descriptor.withUnsafeBytes { zmq_send(raw.handle, $0.baseAddress, $0.count, 0) }
        }
        let good = SharedPayloads.encode(SlotDescriptor(slot: 0, sequence: 2, count: 64, round: 0))
        for (target, count, sender, descriptor, expected) in [
            (plain, UInt32(64), Int32(0), good, "passes payloads as ZeroMQ frames"),
            (shared, 64, 0, Array(good.prefix(16)), "descriptor of 16 bytes"),
            (shared, 63, 0, good, "not the model's 64"),
            (shared, 64, 7, good, "cannot map the sender's shared memory"),
        ] {
            try send(to: target, count: count, sender: sender, descriptor: descriptor)
            guard case .rejected(let error) = try receive(target) else {
                XCTFail("accepted a misfit descriptor (\(expected))")
                continue
            }
            XCTAssertTrue("\(error)".contains(expected), "\(error) does not say \(expected)")
        }
    }

    /// A part of a published model (an all-reduce chunk) travels as a descriptor with an offset
    /// into the model's slot: the reader gets exactly that part, and nothing was published again.
    func testChunkOfAPublishedModel_ArrivesAsItsPartOfTheSlot() throws {
        let plan = SharedPayloadPlan(slotCount: 4, modelSize: 1_000)
        let (id, sender, reader, _) = try senderAndReader(plan, senderRank: 0, readerRank: 1)
        let values = (0..<plan.modelSize).map { Float($0) }
        let model = values.withUnsafeBufferPointer { sender.makePayload($0, round: 3) }
        let chunk = FloatPayload(wrapping: model.pointer + 250, count: 250, release: { withExtendedLifetime(model) {} })
        var envelope = Envelope(
            header: MessageHeader(kind: .reduceScatter, runID: id, round: 2, sender: 0),
            body: [0, 0, 0, 0, 0, 0, 0, 0],
            payload: chunk)
        envelope.header.payloadEncoding = .dense
        try sender.send(envelope, to: .worker(1))
        let received = try XCTUnwrap(try self.envelope(receive(reader)).payload)
        XCTAssertEqual(received.array, Array(values[250..<500]))
        XCTAssertNil(received.damage())
        let segment = try SharedSegment.open(
            runID: id, rank: 0, slotCount: plan.slotCount, slotCapacity: plan.modelSize)
        XCTAssertThrowsError(
            try segment.values(SlotDescriptor(slot: 1, sequence: 2, count: 1, round: 3)), "published once, in slot 0")
        XCTAssertThrowsError(
            try segment.values(SlotDescriptor(slot: 0, sequence: 2, count: 250, round: 3, offset: 751)),
            "a part past the slot's end")
    }

    /// The all-reduce's directory: worker 1 (the hub) passes on a part of worker 2's model that it
    /// received and a part of its own; worker 0 reads both in their publishers' slots, the values
    /// bit for bit, with the slot checks of the descriptors they were published with (a rewrite of
    /// worker 2's slot is reported). A payload the hub neither published nor received cannot be
    /// passed on, and a table naming the receiver itself as a publisher is refused.
    func testDirectory_PassesOnOtherWorkersSlots_ReadInPlaceAndChecked() throws {
        let id = runID()
        let plan = SharedPayloadPlan(slotCount: 3, modelSize: 1_000)
        let context = try ZeroMQContext()
        let nodes = try (0..<3).map { _ in try ZeroMQTransport(context: context, bindEndpoint: "tcp://127.0.0.1:*") }
        for (rank, node) in nodes.enumerated() {
            try node.shareModels(plan, runID: id, rank: rank)
            node.admit(.run(runID: id, modelSize: plan.modelSize))
        }
        try nodes[2].connect(.worker(1), endpoint: nodes[1].localEndpoint)
        try nodes[1].connect(.worker(0), endpoint: nodes[0].localEndpoint)
        let body: [UInt8] = [0, 0, 0, 0, 0, 0, 0, 0]
        let theirs = (0..<plan.modelSize).map { Float($0) * 0.5 }
        let mine = (0..<plan.modelSize).map { Float(-$0) }
        let contribution = theirs.withUnsafeBufferPointer { nodes[2].makePayload($0, round: 4) }
        try nodes[2].send(
            Envelope(
                header: MessageHeader(kind: .allReduceContribution, runID: id, round: 3, sender: 2), body: body,
                payload: contribution), to: .worker(1))
        let received = try XCTUnwrap(try envelope(receive(nodes[1])).payload)
        let own = mine.withUnsafeBufferPointer { nodes[1].makePayload($0, round: 4) }
        func part(_ payload: FloatPayload) -> FloatPayload {
            FloatPayload(wrapping: payload.pointer + 100, count: 300, release: { withExtendedLifetime(payload) {} })
        }
        let header = MessageHeader(kind: .allReduceDirectory, runID: id, round: 3, sender: 1)
        try nodes[1].send(
            Envelope(
                header: header, body: body,
                forwarded: [
                    ForwardedPayload(publisher: 1, payload: part(own)),
                    ForwardedPayload(publisher: 2, payload: part(received)),
                ]), to: .worker(0))
        let directory = try envelope(receive(nodes[0]))
        XCTAssertEqual(directory.forwarded.map(\.publisher), [1, 2])
        XCTAssertEqual(directory.forwarded[0].payload.array, Array(mine[100..<400]))
        XCTAssertEqual(directory.forwarded[1].payload.array, Array(theirs[100..<400]))
        XCTAssertTrue(directory.forwarded.allSatisfy { $0.payload.damage() == nil && $0.payload.isFinite })

        // Worker 2 comes round to the slot again: the forwarded part reports the rewrite.
        for round in 5...7 { _ = theirs.withUnsafeBufferPointer { nodes[2].makePayload($0, round: round) } }
        XCTAssertNotNil(directory.forwarded[1].payload.damage())

        let stranger = FloatPayload(copying: [Float](repeating: 1, count: 300))
        XCTAssertThrowsError(
            try nodes[1].send(
                Envelope(header: header, body: body, forwarded: [ForwardedPayload(publisher: 2, payload: stranger)]),
                to: .worker(0)))
        // A table naming the receiver as a publisher, sent by hand.
        let raw = try ZeroMQSocket(context: context, type: ZMQ_PUSH, lingerMilliseconds: 1_000)
        try raw.connect(nodes[0].localEndpoint)
        let first = Envelope(header: header, body: body, forwarded: []).firstFrame
        var table: [UInt8] = [0, 0, 0, 0, 0, 0, 0, 0]
        table += SharedPayloads.encode(SlotDescriptor(slot: 0, sequence: 2, count: 300, round: 4))
        _ = first.withUnsafeBytes { zmq_send(raw.handle, $0.baseAddress, $0.count, ZMQ_SNDMORE) }
        _ = table.withUnsafeBytes { zmq_send(raw.handle, $0.baseAddress, $0.count, 0) }
        guard case .rejected(let error) = try receive(nodes[0]) else {
            return XCTFail("took its own slot as passed on")
        }
        XCTAssertTrue("\(error)".contains("not another process's"), "\(error)")
    }

    /// A frame of forwarded descriptors is admitted only in the all-reduce's directories and
    /// results, only as whole 40-byte entries (at least one, at most one per worker of the
    /// largest run), with no floats declared, and only after the node joined the run.
    func testForwardedTables_AreAdmittedOnlyWhereTheyBelong() {
        let admission = FrameAdmission.run(runID: 5, modelSize: 100)
        let entry = PayloadEncoding.forwardedEntryBytes
        func header(_ kind: MessageKind, floats: UInt32 = 0) -> MessageHeader {
            var header = MessageHeader(kind: kind, runID: 5, round: 1, sender: 0, payloadCount: floats)
            header.payloadEncoding = .forwardedSharedMemory
            return header
        }
        XCTAssertNil(admission.problem(with: header(.allReduceDirectory), payloadBytes: 3 * entry))
        XCTAssertNil(admission.problem(with: header(.allReduceResult), payloadBytes: entry))
        for (kind, floats, bytes) in [
            (MessageKind.parameters, UInt32(0), entry), (.metrics, 0, entry), (.allReduceDirectory, 0, 0),
            (.allReduceDirectory, 0, entry - 1), (.allReduceDirectory, 0, 3 * entry + 8),
            (.allReduceDirectory, 100, entry),
            (.allReduceResult, 0, (FrameAdmission.maximumForwardedPayloads + 1) * entry),
        ] {
            XCTAssertNotNil(
                admission.problem(with: header(kind, floats: floats), payloadBytes: bytes),
                "\(kind), \(floats) floats, \(bytes) bytes")
        }
        XCTAssertNotNil(FrameAdmission.joining.problem(with: header(.allReduceDirectory), payloadBytes: entry))
    }
}
