import SharedMemory
import Transport

/// The shared-memory side of a `ZeroMQTransport` (processes of one run on one host): this node's
/// segment, into which it publishes every model it sends, and its peers' segments, mapped
/// read-only on first use and kept mapped until the transport goes (a dead peer's segment stays
/// readable: its pages live as long as a mapping does).
final class SharedPayloads {
    let plan: SharedPayloadPlan
    let runID: UInt64
    private let own: SharedSegment
    private var peers: [Int32: SharedSegment] = [:]
    /// The last few payloads published and where: one model sent to k peers is published once,
    /// and a snapshot made by `publish` is not published again when sent (a round makes at most
    /// three, and may make the next before the first is sent).
    private var recentlyPublished: [(payload: FloatPayload, descriptor: SlotDescriptor)] = []
    /// The descriptor last received for each slot of each publisher, so a payload read from a
    /// peer's slot (or a part of one) can be passed on by the descriptor it came with.
    private var received: [Int32: [Int: SlotDescriptor]] = [:]
    /// This node's rank (−1: the coordinator).
    private let rank: Int32

    init(plan: SharedPayloadPlan, runID: UInt64, rank: Int?) throws {
        self.plan = plan
        self.runID = runID
        self.rank = Int32(rank ?? -1)
        own = try SharedSegment.create(
            runID: runID, rank: rank ?? -1, slotCount: plan.slotCount, slotCapacity: plan.modelSize)
    }

    var segmentName: String { own.name }

    /// Writes `values` into a free slot of this node's segment and returns them there, in place
    /// (valid until the slot is written again, once the round is recorded: see
    /// `SharedPayloadPlan.slotCount`); sending the payload then sends only its descriptor.
    func publish(_ values: UnsafeBufferPointer<Float>, round: Int64, fromLastSlot: Bool = false) -> FloatPayload {
        guard values.count <= plan.modelSize else { return FloatPayload(copying: values) }
        let descriptor = own.publish(values, round: round, fromLastSlot: fromLastSlot)
        let segment = own
        let payload = FloatPayload(
            wrapping: segment.valuesInPlace(descriptor), count: values.count,
            release: { withExtendedLifetime(segment) {} }, knownFinite: segment.isFinite(descriptor))
        remember(payload, descriptor)
        return payload
    }

    /// No reader uses this node's models of round `round` or before any more: their slots are
    /// free to write (`SharedSegment.release(through:)`).
    func release(through round: Int64) {
        own.release(through: round)
    }

    private func remember(_ payload: FloatPayload, _ descriptor: SlotDescriptor) {
        if recentlyPublished.count == 4 { recentlyPublished.removeFirst() }
        recentlyPublished.append((payload, descriptor))
    }

    /// The descriptor frame of `payload`: where it was published, or where the model it is part
    /// of was (an all-reduce chunk), or else it is published now.
    func descriptorFrame(for payload: FloatPayload, round: Int64) -> [UInt8] {
        let descriptor =
            publishedDescriptor(of: payload)
            ?? withExtendedLifetime(payload) {
                let published = own.publish(payload.buffer, round: round)
                remember(payload, published)
                return published
            }
        return Self.encode(descriptor)
    }

    /// Where this node published `payload`, or the model it is a part of (an all-reduce chunk).
    private func publishedDescriptor(of payload: FloatPayload) -> SlotDescriptor? {
        if let known = recentlyPublished.last(where: { $0.payload === payload }) { return known.descriptor }
        guard
            let whole = recentlyPublished.last(where: {
                payload.pointer >= $0.payload.pointer
                    && payload.pointer + payload.count <= $0.payload.pointer + $0.payload.count
            })
        else { return nil }
        return whole.descriptor.part(offset: payload.pointer - whole.payload.pointer, count: payload.count)
    }

    /// The frame of a message passing on `forwarded`: per payload its publisher and the descriptor
    /// of its place in that publisher's slot, as this node published or received it (a part of a
    /// received model keeps the descriptor's sequence, so a reader still detects a rewrite).
    func forwardedFrame(for forwarded: [ForwardedPayload]) throws -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(forwarded.count * PayloadEncoding.forwardedEntryBytes)
        for entry in forwarded {
            guard let descriptor = descriptor(of: entry) else {
                throw TransportError(
                    "cannot pass on a payload as worker \(entry.publisher)'s: it is not in a slot of that worker's segment that this node published or received"
                )
            }
            withUnsafeBytes(of: entry.publisher.littleEndian) { bytes.append(contentsOf: $0) }
            bytes.append(contentsOf: [0, 0, 0, 0])
            bytes.append(contentsOf: Self.encode(descriptor))
        }
        return bytes
    }

    private func descriptor(of entry: ForwardedPayload) -> SlotDescriptor? {
        let payload = entry.payload
        if entry.publisher == rank { return publishedDescriptor(of: payload) }
        guard let segment = peers[entry.publisher], let (slot, offset) = segment.locate(payload.pointer),
            let whole = received[entry.publisher]?[slot],
            offset >= whole.offset, offset + payload.count <= whole.offset + whole.count
        else { return nil }
        return whole.part(offset: offset - whole.offset, count: payload.count)
    }

    /// The payloads a forwarded-payload frame lists, each read in its publisher's segment.
    func forwardedPayloads(frame: UnsafeRawBufferPointer) throws(WireError) -> [ForwardedPayload] {
        let entryBytes = PayloadEncoding.forwardedEntryBytes
        guard frame.count > 0, frame.count % entryBytes == 0 else {
            throw WireError.malformed("a forwarded-payload table of \(frame.count) bytes")
        }
        var forwarded: [ForwardedPayload] = []
        for start in stride(from: 0, to: frame.count, by: entryBytes) {
            let publisher = Int32(littleEndian: frame.loadUnaligned(fromByteOffset: start, as: Int32.self))
            let descriptor = Self.decode(
                UnsafeRawBufferPointer(rebasing: frame[(start + 8)..<(start + entryBytes)]))
            guard publisher >= -1, publisher != rank else {
                throw WireError.malformed("a payload passed on as published by \(publisher), not another process's")
            }
            forwarded.append(
                ForwardedPayload(publisher: publisher, payload: try payload(from: publisher, descriptor: descriptor)))
        }
        return forwarded
    }

    /// The payload a descriptor frame from `sender` (a rank, −1 for the coordinator) points at:
    /// the sender's slot in place, which stays mapped while the payload lives; its `damage()`
    /// says whether the sender has since rewritten the slot.
    func payload(from sender: Int32, frame: UnsafeRawBufferPointer, count: Int) throws(WireError) -> FloatPayload {
        guard frame.count == PayloadEncoding.sharedMemoryDescriptorBytes else {
            throw WireError.malformed("a shared-memory descriptor of \(frame.count) bytes")
        }
        let descriptor = Self.decode(frame)
        guard descriptor.count == count else {
            throw WireError.malformed(
                "a shared-memory descriptor of \(descriptor.count) floats for a payload of \(count) (the model has \(plan.modelSize))"
            )
        }
        return try payload(from: sender, descriptor: descriptor)
    }

    /// The payload in `publisher`'s slot that `descriptor` names, mapping its segment on first use.
    private func payload(from sender: Int32, descriptor: SlotDescriptor) throws(WireError) -> FloatPayload {
        guard descriptor.count <= plan.modelSize else {
            throw WireError.malformed(
                "a shared-memory descriptor of \(descriptor.count) floats (the model has \(plan.modelSize))")
        }
        let segment: SharedSegment
        if let mapped = peers[sender] {
            segment = mapped
        } else {
            do {
                segment = try SharedSegment.open(
                    runID: runID, rank: Int(sender), slotCount: plan.slotCount, slotCapacity: plan.modelSize)
            } catch {
                throw WireError.malformed("cannot map the sender's shared memory: \(error)")
            }
            peers[sender] = segment
        }
        let values: UnsafeBufferPointer<Float>
        do {
            values = try segment.place(of: descriptor)
        } catch {
            throw WireError.malformed(error.description)
        }
        received[sender, default: [:]][descriptor.slot] = descriptor
        // A slot already rewritten when its descriptor arrives (a message no one needs any more,
        // like a survivor's replay of a round this node finished, whose sender has since learnt
        // that the round is recorded) is not an error until it is used: the payload goes on with
        // its `damage()` set, which fails whoever reads it, and a message dropped as stale costs
        // nothing. It is marked finite so that no finiteness check turns it into a rejection (a
        // wait for a message that will not come) before the damage check.
        let stale = segment.rewritten(descriptor) != nil
        return FloatPayload(
            wrapping: values.baseAddress!, count: values.count, release: { withExtendedLifetime(segment) {} },
            integrity: { segment.rewritten(descriptor) },
            knownFinite: stale || segment.isFinite(descriptor) ? true : nil)
    }

    static func encode(_ descriptor: SlotDescriptor) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(PayloadEncoding.sharedMemoryDescriptorBytes)
        func put<T: FixedWidthInteger>(_ value: T) {
            withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
        }
        put(UInt32(descriptor.slot))
        put(UInt32(descriptor.count))
        put(descriptor.sequence)
        put(descriptor.round)
        put(UInt64(descriptor.offset))
        return bytes
    }

    static func decode(_ frame: UnsafeRawBufferPointer) -> SlotDescriptor {
        func get<T: FixedWidthInteger>(_: T.Type, at offset: Int) -> T {
            T(littleEndian: frame.loadUnaligned(fromByteOffset: offset, as: T.self))
        }
        return SlotDescriptor(
            slot: Int(get(UInt32.self, at: 0)), sequence: get(UInt64.self, at: 8), count: Int(get(UInt32.self, at: 4)),
            round: get(Int64.self, at: 16), offset: Int(clamping: get(UInt64.self, at: 24)))
    }
}
