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
    /// The first rewritten slot a read found (the run must fail).
    private(set) var fault: String?

    init(plan: SharedPayloadPlan, runID: UInt64, rank: Int?) throws {
        self.plan = plan
        self.runID = runID
        own = try SharedSegment.create(
            runID: runID, rank: rank ?? -1, slotCount: plan.slotCount, slotCapacity: plan.modelSize)
    }

    var segmentName: String { own.name }

    /// Writes `values` into this node's next slot and returns them there, in place (valid until
    /// the ring comes round to the slot again, far longer than a round: see
    /// `SharedPayloadPlan.slotCount`); sending the payload then sends only its descriptor.
    func publish(_ values: UnsafeBufferPointer<Float>, round: Int64) -> FloatPayload {
        guard values.count <= plan.modelSize else { return FloatPayload(copying: values) }
        let descriptor = own.publish(values, round: round)
        let segment = own
        let payload = FloatPayload(
            wrapping: segment.valuesInPlace(descriptor), count: values.count,
            release: { withExtendedLifetime(segment) {} }, knownFinite: segment.isFinite(descriptor))
        remember(payload, descriptor)
        return payload
    }

    private func remember(_ payload: FloatPayload, _ descriptor: SlotDescriptor) {
        if recentlyPublished.count == 4 { recentlyPublished.removeFirst() }
        recentlyPublished.append((payload, descriptor))
    }

    /// The descriptor frame of `payload`: where it was published, or where the model it is part
    /// of was (an all-reduce chunk), or else it is published now.
    func descriptorFrame(for payload: FloatPayload, round: Int64) -> [UInt8] {
        let descriptor: SlotDescriptor
        if let known = recentlyPublished.last(where: { $0.payload === payload }) {
            descriptor = known.descriptor
        } else if let whole = recentlyPublished.last(where: {
            payload.pointer >= $0.payload.pointer
                && payload.pointer + payload.count <= $0.payload.pointer + $0.payload.count
        }) {
            // A view into a published model (a chunk for the all-reduce): its place in that slot.
            descriptor = whole.descriptor.part(offset: payload.pointer - whole.payload.pointer, count: payload.count)
        } else {
            descriptor = withExtendedLifetime(payload) { own.publish(payload.buffer, round: round) }
            remember(payload, descriptor)
        }
        return Self.encode(descriptor)
    }

    /// The payload a descriptor frame from `sender` (a rank, −1 for the coordinator) points at:
    /// the sender's slot in place, which stays mapped while the payload lives; its `damage()`
    /// says whether the sender has since rewritten the slot.
    func payload(from sender: Int32, frame: UnsafeRawBufferPointer, count: Int) throws(WireError) -> FloatPayload {
        guard frame.count == PayloadEncoding.sharedMemoryDescriptorBytes else {
            throw WireError.malformed("a shared-memory descriptor of \(frame.count) bytes")
        }
        let descriptor = Self.decode(frame)
        guard descriptor.count == count, count <= plan.modelSize else {
            throw WireError.malformed(
                "a shared-memory descriptor of \(descriptor.count) floats for a payload of \(count) (the model has \(plan.modelSize))"
            )
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
            values = try segment.values(descriptor)
        } catch {
            if fault == nil { fault = error.description }
            throw WireError.malformed(error.description)
        }
        return FloatPayload(
            wrapping: values.baseAddress!, count: values.count, release: { withExtendedLifetime(segment) {} },
            integrity: { segment.rewritten(descriptor) }, knownFinite: segment.isFinite(descriptor) ? true : nil)
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
