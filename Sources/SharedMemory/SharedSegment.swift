import CSharedMemory
import LearningCore

#if canImport(Glibc)
    import Glibc
#endif

/// A process's segment of POSIX shared memory holding a set of model slots: what a sender
/// publishes once and every reader on the host mixes from in place (the data plane of #11; the
/// transport carries only a `SlotDescriptor`).
///
/// Layout: a 64-byte header (magic, run id, rank, slot count, slot capacity in floats, the owner's
/// process id), then the
/// slots, each a 64-byte slot header (sequence word, round, count) and `slotCapacity` floats.
/// The sequence word is a seqlock: a write makes it odd, writes the round, count and values, then
/// makes it even again, with release order; a reader loads it with acquire order, reads, and loads
/// it again; a change means the slot was rewritten under it, which `read` reports naming both
/// rounds. A model goes to the lowest-numbered slot whose model no reader uses any more (the
/// owner learns it from the coordinator's acknowledgements, `release(through:)`), or else to the
/// slot written longest ago; S must exceed how many models a sender can have in use at once
/// (`SharedPayloadPlan.slotCount` bounds it from flow control), and a reader that finds its slot
/// rewritten anyway reports it, never silently reads it.
///
/// The owner creates the segment `O_EXCL` with mode 0600 and reserves its pages with
/// `posix_fallocate`, so a full `/dev/shm` fails at set-up (never a SIGBUS mid-run), and unlinks
/// it when released; readers map it read-only after checking its size and header against the run
/// they belong to, so a stale segment of another run is never read.
public final class SharedSegment: @unchecked Sendable {
    public let name: String
    public let runID: UInt64
    public let rank: Int
    public let slotCount: Int
    public let slotCapacity: Int
    public let isOwner: Bool
    private let base: UnsafeMutableRawPointer
    private let length: Int
    /// Models published so far.
    public private(set) var published = 0
    /// The owner's view of each slot: the round of the model it last held and when it was
    /// published (−1: never), for choosing the slot to write next (`nextSlot`).
    private var slotRounds: [Int64]
    private var slotPublications: [Int]
    /// Every model of this round or before is no longer read by anyone (`release(through:)`;
    /// nil: the owner was never told).
    public private(set) var releasedThrough: Int64?

    static let magic: UInt64 = 0x3148_4D53_4447_5344  // "DSGDSMH1", little-endian
    static let headerLength = 64
    static let slotHeaderLength = 64

    /// The segment name of a run's rank (a negative rank: the coordinator's): the run id and rank
    /// in it, so no run opens another's; launchers remove `/dev/shm/dsgd-<run id>-*` after a crash.
    public static func name(runID: UInt64, rank: Int) -> String {
        let hex = String(runID, radix: 16)
        let owner = rank < 0 ? "coordinator" : "rank\(rank)"
        return "/dsgd-\(String(repeating: "0", count: max(0, 16 - hex.count)) + hex)-\(owner)"
    }

    /// Bytes of a segment with this shape (slots aligned to 64 bytes).
    public static func byteCount(slotCount: Int, slotCapacity: Int) -> Int {
        headerLength + slotCount * slotStride(capacity: slotCapacity)
    }

    static func slotStride(capacity: Int) -> Int {
        (slotHeaderLength + capacity * MemoryLayout<Float>.size + 63) / 64 * 64
    }

    private init(
        name: String, runID: UInt64, rank: Int, slotCount: Int, slotCapacity: Int, isOwner: Bool,
        base: UnsafeMutableRawPointer, length: Int
    ) {
        self.name = name
        self.runID = runID
        self.rank = rank
        self.slotCount = slotCount
        self.slotCapacity = slotCapacity
        self.isOwner = isOwner
        self.base = base
        self.length = length
        slotRounds = isOwner ? Array(repeating: 0, count: slotCount) : []
        slotPublications = isOwner ? Array(repeating: -1, count: slotCount) : []
    }

    deinit {
        munmap(base, length)
        if isOwner { shm_unlink(name) }
    }

    /// Creates and maps the segment of `rank` in run `runID` (the publishing side).
    public static func create(runID: UInt64, rank: Int, slotCount: Int, slotCapacity: Int) throws(SharedMemoryError)
        -> SharedSegment
    {
        guard slotCount > 0, slotCapacity > 0 else {
            throw SharedMemoryError(segment: "-", reason: "needs at least one slot of at least one value")
        }
        let name = Self.name(runID: runID, rank: rank)
        let length = byteCount(slotCount: slotCount, slotCapacity: slotCapacity)
        let descriptor = shm_open(name, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw SharedMemoryError(segment: name, reason: "cannot create: \(lastError())") }
        defer { close(descriptor) }
        func fail(_ what: String) -> SharedMemoryError {
            let error = SharedMemoryError(segment: name, reason: what)
            shm_unlink(name)
            return error
        }
        guard ftruncate(descriptor, off_t(length)) == 0 else {
            throw fail("cannot size to \(length) bytes: \(lastError())")
        }
        let reserved = posix_fallocate(descriptor, 0, off_t(length))
        guard reserved == 0 else {
            throw fail(
                "cannot reserve \(length) bytes in /dev/shm (\(String(cString: strerror(reserved)))): too little space")
        }
        guard let mapping = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_SHARED, descriptor, 0),
            mapping != MAP_FAILED
        else { throw fail("cannot map: \(lastError())") }
        let header = mapping.assumingMemoryBound(to: UInt64.self)
        header[1] = runID
        header[2] = UInt64(bitPattern: Int64(rank))
        header[3] = UInt64(slotCount)
        header[4] = UInt64(slotCapacity)
        header[5] = UInt64(getpid())
        dsgd_store_release_u64(header, magic)
        return SharedSegment(
            name: name, runID: runID, rank: rank, slotCount: slotCount, slotCapacity: slotCapacity, isOwner: true,
            base: mapping, length: length)
    }

    /// Maps `rank`'s segment of run `runID` read-only, after checking that its size and header
    /// are those of this run's shape (the reading side).
    public static func open(runID: UInt64, rank: Int, slotCount: Int, slotCapacity: Int) throws(SharedMemoryError)
        -> SharedSegment
    {
        let name = Self.name(runID: runID, rank: rank)
        let length = byteCount(slotCount: slotCount, slotCapacity: slotCapacity)
        let descriptor = shm_open(name, O_RDONLY | O_CLOEXEC, 0)
        guard descriptor >= 0 else { throw SharedMemoryError(segment: name, reason: "cannot open: \(lastError())") }
        defer { close(descriptor) }
        var status = stat()
        guard fstat(descriptor, &status) == 0, Int(status.st_size) == length else {
            throw SharedMemoryError(
                segment: name,
                reason: "is \(status.st_size) bytes, not the \(length) of \(slotCount) slots of \(slotCapacity) values")
        }
        guard let mapping = mmap(nil, length, PROT_READ, MAP_SHARED, descriptor, 0), mapping != MAP_FAILED else {
            throw SharedMemoryError(segment: name, reason: "cannot map: \(lastError())")
        }
        let header = mapping.assumingMemoryBound(to: UInt64.self)
        let found = [dsgd_load_acquire_u64(header), header[1], header[2], header[3], header[4]]
        let expected = [magic, runID, UInt64(bitPattern: Int64(rank)), UInt64(slotCount), UInt64(slotCapacity)]
        if found != expected {
            munmap(mapping, length)
            let fields = ["magic", "run id", "rank", "slot count", "slot capacity"]
            let wrong = zip(fields, zip(found, expected)).filter { $0.1.0 != $0.1.1 }.map {
                "\($0.0) \($0.1.0) (expected \($0.1.1))"
            }
            throw SharedMemoryError(segment: name, reason: "header does not match: " + wrong.joined(separator: ", "))
        }
        return SharedSegment(
            name: name, runID: runID, rank: rank, slotCount: slotCount, slotCapacity: slotCapacity, isOwner: false,
            base: mapping, length: length)
    }

    /// Unlinks the dsgd segments in `/dev/shm` whose owner process no longer exists (killed before
    /// it could unlink them; launchers remove their runs' too, this catches processes started
    /// without one). Returns the names removed. Segments of live processes, of other users, or
    /// without a dsgd header are left alone.
    @discardableResult
    public static func removeStale(directory: String = "/dev/shm") -> [String] {
        guard let stream = opendir(directory) else { return [] }
        defer { closedir(stream) }
        var removed: [String] = []
        while let entry = readdir(stream) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) {
                String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
            }
            guard name.hasPrefix("dsgd-") else { continue }
            let descriptor = shm_open("/" + name, O_RDONLY | O_CLOEXEC, 0)
            guard descriptor >= 0 else { continue }
            var header = [UInt64](repeating: 0, count: 8)
            let count = header.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress, $0.count, 0) }
            var status = stat()
            let mine = fstat(descriptor, &status) == 0 && status.st_uid == getuid()
            close(descriptor)
            guard mine, count == 64, header[0] == magic, header[5] > 0, header[5] <= UInt64(Int32.max) else { continue }
            if kill(pid_t(header[5]), 0) == -1 && errno == ESRCH {
                shm_unlink("/" + name)
                removed.append(name)
            }
        }
        return removed
    }

    private func slot(_ index: Int) -> UnsafeMutableRawPointer {
        base + Self.headerLength + index * Self.slotStride(capacity: slotCapacity)
    }

    /// The owner learnt that no reader uses a model of round `round` or before any more (for a
    /// worker: the coordinator recorded that round, so every neighbour mixed its models and the
    /// coordinator read them; `SharedPayloadPlan.slotCount`). Their slots may be written again.
    public func release(through round: Int64) {
        releasedThrough = max(releasedThrough ?? round, round)
    }

    /// The slot the next model goes to: the lowest-numbered slot whose model is released (or that
    /// never held one), or with `fromLastSlot` the highest-numbered, so a run keeps writing the
    /// same few slots at each end and a reader's touched pages (its resident set) are only as many
    /// as the models in use that are meant for it; with none free, the slot written longest ago
    /// (an owner that is never told, like the coordinator, rotates through all `slotCount`).
    private func nextSlot(fromLastSlot: Bool) -> Int {
        let released = releasedThrough ?? .min
        let isFree = { (slot: Int) in self.slotPublications[slot] < 0 || self.slotRounds[slot] <= released }
        if let free = fromLastSlot ? slotRounds.indices.last(where: isFree) : slotRounds.indices.first(where: isFree) {
            return free
        }
        return slotPublications.indices.min { slotPublications[$0] < slotPublications[$1] }!
    }

    /// Writes the values of a model of round `round` into a free slot (`nextSlot`); returns what a
    /// reader needs to find and check them.
    public func publish(_ values: UnsafeBufferPointer<Float>, round: Int64, fromLastSlot: Bool = false)
        -> SlotDescriptor
    {
        precondition(isOwner, "only the owner publishes")
        precondition(values.count <= slotCapacity, "\(values.count) values for slots of \(slotCapacity)")
        let index = nextSlot(fromLastSlot: fromLastSlot)
        slotRounds[index] = round
        slotPublications[index] = published
        published += 1
        let slot = self.slot(index)
        let words = slot.assumingMemoryBound(to: UInt64.self)
        let sequence = dsgd_load_acquire_u64(words)
        dsgd_store_release_u64(words, sequence + 1)  // odd: being written
        words[1] = UInt64(bitPattern: round)
        words[2] = UInt64(values.count)
        words[3] =
            Self.copyCheckingFinite(values, to: (slot + Self.slotHeaderLength).assumingMemoryBound(to: Float.self))
            ? 1 : 0
        dsgd_store_release_u64(words, sequence + 2)
        return SlotDescriptor(slot: index, sequence: sequence + 2, count: values.count, round: round)
    }

    /// Copies `values` to `target`, checking each value on the way (one pass); returns whether
    /// every value is finite, so readers need not scan a model again for it.
    static func copyCheckingFinite(_ values: UnsafeBufferPointer<Float>, to target: UnsafeMutablePointer<Float>) -> Bool
    {
        guard let source = values.baseAddress else { return true }
        return VectorKernels.copyCheckingFinite(source, to: target, values.count)
    }

    /// Whether the publisher found every value of the descriptor's slot finite (read with the
    /// values: valid when `rewritten` says the slot was not rewritten).
    public func isFinite(_ descriptor: SlotDescriptor) -> Bool {
        slot(descriptor.slot).assumingMemoryBound(to: UInt64.self)[3] == 1
    }

    /// The slot's values in place, after checking that the descriptor is in range and the slot
    /// still holds it. They stay valid only until the owner reuses the slot: a reader calls
    /// `rewritten(_:)` when done and discards what it computed if that is not nil.
    public func values(_ descriptor: SlotDescriptor) throws(SharedMemoryError) -> UnsafeBufferPointer<Float> {
        let values = try place(of: descriptor)
        if let problem = rewritten(descriptor, moment: "before") {
            throw SharedMemoryError(segment: name, reason: problem)
        }
        return values
    }

    /// Where the descriptor's values are, after checking that it is in range, whatever the slot
    /// holds now (`rewritten(_:)` says whether it still holds them).
    public func place(of descriptor: SlotDescriptor) throws(SharedMemoryError) -> UnsafeBufferPointer<Float> {
        guard (0..<slotCount).contains(descriptor.slot), (0...slotCapacity).contains(descriptor.count),
            (0...(slotCapacity - descriptor.count)).contains(descriptor.offset)
        else {
            throw SharedMemoryError(
                segment: name,
                reason:
                    "descriptor of slot \(descriptor.slot), \(descriptor.count) values from \(descriptor.offset) is out of range"
            )
        }
        return UnsafeBufferPointer(
            start: (slot(descriptor.slot) + Self.slotHeaderLength).assumingMemoryBound(to: Float.self)
                + descriptor.offset,
            count: descriptor.count)
    }

    /// The slot whose values `pointer` points into, and how many floats into them, or nil when it
    /// points outside this segment's slots.
    public func locate(_ pointer: UnsafePointer<Float>) -> (slot: Int, offset: Int)? {
        let byte = UnsafeRawPointer(pointer) - UnsafeRawPointer(base) - Self.headerLength
        let stride = Self.slotStride(capacity: slotCapacity)
        guard byte >= 0, byte < slotCount * stride else { return nil }
        let within = byte % stride - Self.slotHeaderLength
        guard within >= 0, within % MemoryLayout<Float>.size == 0, within / MemoryLayout<Float>.size < slotCapacity
        else { return nil }
        return (byte / stride, within / MemoryLayout<Float>.size)
    }

    /// Where the owner's slot of `descriptor` holds its values (the publishing side's view).
    public func valuesInPlace(_ descriptor: SlotDescriptor) -> UnsafePointer<Float> {
        UnsafePointer((slot(descriptor.slot) + Self.slotHeaderLength).assumingMemoryBound(to: Float.self))
    }

    /// Why the descriptor's slot no longer holds its model (naming both rounds), or nil while it
    /// does. Call after reading the values: the acquire fence orders the reads before this check.
    public func rewritten(_ descriptor: SlotDescriptor, moment: String = "while") -> String? {
        dsgd_fence_acquire()
        let words = UnsafePointer(slot(descriptor.slot).assumingMemoryBound(to: UInt64.self))
        let sequence = dsgd_load_acquire_u64(words)
        guard sequence != descriptor.sequence else { return nil }
        let now = Int64(bitPattern: words[1])
        return
            "\(name): slot \(descriptor.slot) was rewritten \(moment) reading a model of round \(descriptor.round): it now holds round \(now)"
            + (sequence % 2 == 1 ? " (being written)" : "")
            + "; a reader used it after its round was recorded, or the sender had no free slot of its \(slotCount)"
    }

    /// Calls `body` with the slot's values in place, then checks that nothing rewrote the slot
    /// meanwhile; throws, naming both rounds, when the slot no longer holds the descriptor's
    /// model (before or after the read). `body`'s result is not to be used after a throw.
    public func read<Result>(_ descriptor: SlotDescriptor, _ body: (UnsafeBufferPointer<Float>) throws -> Result)
        throws -> Result
    {
        let result = try body(try values(descriptor))
        if let problem = rewritten(descriptor) { throw SharedMemoryError(segment: name, reason: problem) }
        return result
    }
}

/// Where a published model is: what travels over ZeroMQ in place of the payload.
public struct SlotDescriptor: Sendable, Equatable {
    public var slot: Int
    /// The slot's sequence word after the write (even).
    public var sequence: UInt64
    public var count: Int
    public var round: Int64
    /// Where the values start in the slot (a part of a published model: an all-reduce chunk).
    public var offset: Int

    public init(slot: Int, sequence: UInt64, count: Int, round: Int64, offset: Int = 0) {
        self.slot = slot
        self.sequence = sequence
        self.count = count
        self.round = round
        self.offset = offset
    }

    /// The descriptor of `count` values from `offset` within this one's.
    public func part(offset: Int, count: Int) -> SlotDescriptor {
        SlotDescriptor(slot: slot, sequence: sequence, count: count, round: round, offset: self.offset + offset)
    }
}

public struct SharedMemoryError: Error, CustomStringConvertible {
    public var segment: String
    public var reason: String
    public var description: String {
        reason.hasPrefix(segment) ? reason : "shared memory segment \(segment): \(reason)"
    }
}

private func lastError() -> String { String(cString: strerror(errno)) }

/// This host's `/dev/shm`: whether segments can be made there, how much room it has, and an
/// identity (boot id, device, inode) equal for processes that share it.
public enum SharedMemoryHost {
    public static func probe(directory: String = "/dev/shm") -> (domain: String?, availableBytes: Int, problem: String?)
    {
        var status = stat()
        guard stat(directory, &status) == 0, (status.st_mode & S_IFMT) == S_IFDIR else {
            return (nil, 0, "\(directory) does not exist")
        }
        var filesystem = statvfs()
        guard statvfs(directory, &filesystem) == 0 else {
            return (nil, 0, "cannot inspect \(directory): \(lastError())")
        }
        let available = Int(filesystem.f_bavail) * Int(filesystem.f_frsize)
        if (filesystem.f_flag & UInt(ST_RDONLY)) != 0 { return (nil, available, "\(directory) is read-only") }
        guard access(directory, W_OK) == 0 else { return (nil, available, "\(directory) is not writable") }
        var boot = "unknown-boot"
        let file = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC)
        if file >= 0 {
            var bytes = [UInt8](repeating: 0, count: 64)
            let count = read(file, &bytes, bytes.count)
            close(file)
            if count > 0 { boot = String(decoding: bytes[0..<count].filter { $0 > 0x20 }, as: UTF8.self) }
        }
        return ("\(boot):\(status.st_dev):\(status.st_ino)", available, nil)
    }
}
