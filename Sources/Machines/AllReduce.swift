import Algorithms
import LearningCore
import RunRecords
import Topologies
import Transport

/// The averaging step of C-SGD (the complete graph with uniform weights 1/n) as an all-reduce:
/// every worker ends the round holding x̄ = (1/n)·Σⱼ xⱼ, the same bits on every worker and in
/// every run, with O(model) traffic per worker instead of the O(n·model) of n − 1 gossip messages.
///
/// The model is cut into n chunks; worker c owns chunk c. Reduce-scatter gives c the average of
/// chunk c, all-gather gives every worker every average chunk. Two ways, equal to the bit:
/// - `.direct` (processes on one host, payloads in shared memory): every worker publishes its
///   model once and sends its descriptor to one worker, the hub (rank 0); the hub sends each
///   chunk's owner one directory, the descriptors of that chunk in every other worker's slot; the
///   owner sums the chunk over those slots and its own model, publishes the average chunk and
///   sends its descriptor to the hub; the hub sends every worker the descriptors of the averaged
///   chunks it lacks. 4(n − 1) messages a round (28 at n = 8, against 2n(n − 1) = 112 for a
///   descriptor per chunk each way): each message wakes a process, the largest cost of the
///   complete graph on a few cores (`perf`). The values are read in place, the same bits, and
///   the hub copies no more than any other worker.
/// - `.ring` (ZeroMQ frames, and in simulation): reduce-scatter and all-gather along the ring
///   r → r + 1 (Patarasuk and Yuan, 2009), 2(n − 1)/n of the model sent per worker.
///
/// Summation order, fixed: chunk c is summed as ((x_{c+1} + x_{c+2}) + … + x_{c−1}) + x_c in
/// Float32 (indices mod n), the order in which the ring's partial sum of chunk c travels from
/// worker c + 1 round to its owner, then scaled by 1/n.
struct AllReduceRound {
    enum Variant: Sendable, Equatable { case direct, ring }
    enum Phase: Int {
        case reduceScatter = 0, allGather = 1
        /// `.direct`: from the hub to every other worker (chunk 0, step 0), the averaged chunks of
        /// every other worker, in their owners' slots, in rank order (`directoryPublishers`).
        case result = 2
        /// `.direct`: a worker's whole model, to the hub (chunk 0, step 0).
        case contribution = 3
        /// `.direct`: from the hub to the owner of chunk c (chunk c, step 0), chunk c of every other
        /// worker's model, in rank order (`directoryPublishers`).
        case directory = 4

        /// The message kind that carries this phase's messages.
        var kind: MessageKind {
            switch self {
            case .reduceScatter: .reduceScatter
            case .allGather: .allGather
            case .result: .allReduceResult
            case .contribution: .allReduceContribution
            case .directory: .allReduceDirectory
            }
        }

        init?(kind: MessageKind) {
            switch kind {
            case .reduceScatter: self = .reduceScatter
            case .allGather: self = .allGather
            case .allReduceResult: self = .result
            case .allReduceContribution: self = .contribution
            case .allReduceDirectory: self = .directory
            default: return nil
            }
        }
    }

    /// `.direct`: the worker that gathers the models' descriptors and the averaged chunks, and
    /// sends the directories and the averaged chunks.
    static let hub = 0

    /// The publishers of a directory's payloads for the owner of chunk `owner`, in their order:
    /// every other worker, ascending.
    static func directoryPublishers(for owner: Int, workers: Int) -> [Int] {
        (0..<workers).filter { $0 != owner }
    }

    /// One message of the collective: a chunk (or partial sum) for one worker, or (a directory)
    /// other workers' parts of one chunk, passed on.
    struct Outgoing {
        var phase: Phase
        var chunk: Int
        var step: Int
        var to: Int
        /// One payload, or (a directory, the averaged chunks) several, in `directoryPublishers`
        /// order.
        var payloads: [FloatPayload]

        init(phase: Phase, chunk: Int, step: Int, to: Int, payload: FloatPayload) {
            self.init(phase: phase, chunk: chunk, step: step, to: to, payloads: [payload])
        }

        init(phase: Phase, chunk: Int, step: Int, to: Int, payloads: [FloatPayload]) {
            self.phase = phase
            self.chunk = chunk
            self.step = step
            self.to = to
            self.payloads = payloads
        }
    }

    let variant: Variant
    let rank: Int
    let workers: Int
    let chunks: [Range<Int>]
    /// This worker's contribution (its snapshot of the round).
    private(set) var own: FloatPayload?
    /// The average's chunks as they come in (this worker's own, and the others' where they are).
    private var averaged: [FloatPayload?]
    /// Floats per model.
    let count: Int
    private var filled = Set<Int>()
    private struct Key: Hashable {
        var phase: Phase
        var chunk: Int
        var step: Int
        var sender: Int
    }
    private var inbox: [Key: [FloatPayload]] = [:]
    /// The ring's next step in each phase.
    private var reduceStep = 0
    private var gatherStep = 0
    private var reduced = false
    /// `.direct`, the hub: whether it has sent the directories, and the averaged chunks.
    private var directoriesSent = false
    private var broadcast = false
    /// Every payload read (checked for damage when the round completes: shared memory).
    private(set) var read: [FloatPayload] = []

    init(variant: Variant, rank: Int, workers: Int, count: Int) {
        self.variant = variant
        self.rank = rank
        self.workers = workers
        chunks = (0..<workers).map { c in (c * count / workers)..<((c + 1) * count / workers) }
        self.count = count
        averaged = Array(repeating: nil, count: workers)
    }

    var isComplete: Bool { filled.count == workers }

    private func mod(_ value: Int) -> Int { ((value % workers) + workers) % workers }
    private var right: Int { mod(rank + 1) }
    private var left: Int { mod(rank - 1) }

    /// What is still missing, and from whom, for timeout messages.
    var missing: String {
        guard own != nil else { return "all-reduce: its own model" }
        switch variant {
        case .direct:
            if rank == Self.hub && !directoriesSent {
                let senders = (0..<workers).filter { sender in
                    sender != rank && inbox[Key(phase: .contribution, chunk: 0, step: 0, sender: sender)] == nil
                }
                return "all-reduce: the models of workers \(senders)"
            }
            if !reduced { return "all-reduce: the directory of chunk \(rank) from worker \(Self.hub)" }
            if rank != Self.hub { return "all-reduce: the averaged chunks from worker \(Self.hub)" }
            return "all-reduce: averaged chunks from workers \((0..<workers).filter { !filled.contains($0) })"
        case .ring:
            let phase = reduced ? "all-gather" : "reduce-scatter"
            return
                "ring all-reduce: \(phase) step \(reduced ? gatherStep : reduceStep) from worker \(left)"
        }
    }

    /// Why a message may not be taken (nil: it fits); checked before it is buffered.
    func problem(phase: Phase, chunk: Int, step: Int, sender: Int, count: Int) -> String? {
        problem(phase: phase, chunk: chunk, step: step, sender: sender, counts: [count])
    }

    /// As above, for a message of `counts.count` payloads (a directory's; one otherwise).
    func problem(phase: Phase, chunk: Int, step: Int, sender: Int, counts: [Int]) -> String? {
        if phase == .result {
            guard variant == .direct, rank != Self.hub, sender == Self.hub, chunk == 0, step == 0 else {
                return
                    "averaged chunks from worker \(sender) (chunk \(chunk), step \(step)); only worker \(Self.hub) sends them"
            }
            guard inbox[Key(phase: phase, chunk: 0, step: 0, sender: sender)] == nil else {
                return "duplicate averaged chunks from worker \(sender)"
            }
            let expected = Self.directoryPublishers(for: rank, workers: workers).map { chunks[$0].count }
            return counts == expected ? nil : "averaged chunks of \(counts) values, not \(expected)"
        }
        if phase == .directory || phase == .contribution {
            guard variant == .direct else { return "a \(phase) message in a ring all-reduce" }
            guard inbox[Key(phase: phase, chunk: chunk, step: step, sender: sender)] == nil else {
                return "a duplicate \(phase) message from worker \(sender)"
            }
            guard step == 0 else { return "a \(phase) message with step \(step)" }
            if phase == .contribution {
                guard rank == Self.hub, chunk == 0 else {
                    return
                        "a model from worker \(sender) (chunk \(chunk)) sent to worker \(rank), not to the hub \(Self.hub)"
                }
                return counts == [count] ? nil : "a model of \(counts) values, not \(count)"
            }
            guard sender == Self.hub, rank != Self.hub, chunk == rank else {
                return
                    "a directory of chunk \(chunk) from worker \(sender) (only worker \(Self.hub) sends them, each owner its own chunk's)"
            }
            let expected = [Int](repeating: chunks[rank].count, count: workers - 1)
            return counts == expected
                ? nil
                : "a directory of \(counts.count) parts of \(Set(counts).sorted()) values, not \(workers - 1) of \(chunks[rank].count)"
        }
        guard counts.count == 1, let count = counts.first else {
            return "a \(phase) message with \(counts.count) payloads, not one"
        }
        guard (0..<workers).contains(chunk), chunks[chunk].count == count else {
            return "all-reduce chunk \(chunk) of \(count) values (the model has \(workers) chunks)"
        }
        if inbox[Key(phase: phase, chunk: chunk, step: step, sender: sender)] != nil {
            return "a duplicate all-reduce message (phase \(phase), chunk \(chunk), step \(step)) from worker \(sender)"
        }
        switch variant {
        case .direct:
            guard step == 0 else { return "a direct all-reduce message with step \(step)" }
            if phase == .reduceScatter {
                return
                    "a chunk from worker \(sender) sent directly (this all-reduce goes through worker \(Self.hub)'s directories)"
            }
            if phase == .allGather && chunk != sender {
                return "worker \(sender) sent a chunk \(chunk) it does not own"
            }
            if phase == .allGather && rank != Self.hub {
                return "an averaged chunk from worker \(sender) sent to worker \(rank), not to the hub \(Self.hub)"
            }
        case .ring:
            guard sender == left, (0...(workers - 2)).contains(step) else {
                return "a ring all-reduce message from worker \(sender) at step \(step) (expected from \(left))"
            }
            let expected = phase == .reduceScatter ? mod(rank - 2 - step) : mod(rank - 1 - step)
            if chunk != expected { return "ring step \(step) of \(phase) carries chunk \(chunk), not \(expected)" }
        }
        return nil
    }

    /// Buffers a checked message and goes as far as the buffered messages allow.
    mutating func receive(
        phase: Phase, chunk: Int, step: Int, sender: Int, payload: FloatPayload,
        make: ([Float]) -> FloatPayload
    ) -> [Outgoing] {
        receive(phase: phase, chunk: chunk, step: step, sender: sender, payloads: [payload], make: make)
    }

    /// As above, for a message of several payloads (a directory's, in `directoryPublishers` order).
    mutating func receive(
        phase: Phase, chunk: Int, step: Int, sender: Int, payloads: [FloatPayload],
        make: ([Float]) -> FloatPayload
    ) -> [Outgoing] {
        inbox[Key(phase: phase, chunk: chunk, step: step, sender: sender)] = payloads
        return advance(make: make)
    }

    /// Contributes this worker's model and sends what can be sent now.
    mutating func start(own: FloatPayload, make: ([Float]) -> FloatPayload) -> [Outgoing] {
        precondition(own.count == count)
        self.own = own
        var outgoing: [Outgoing] = []
        if workers == 1 {
            finishReduction(sum: Array(own.buffer), make: make)
            return []
        }
        switch variant {
        case .direct:
            if rank != Self.hub {
                outgoing.append(Outgoing(phase: .contribution, chunk: 0, step: 0, to: Self.hub, payload: own))
            }
        case .ring:
            let chunk = mod(rank - 1)
            outgoing.append(
                Outgoing(phase: .reduceScatter, chunk: chunk, step: 0, to: right, payload: view(own, chunk)))
        }
        return outgoing + advance(make: make)
    }

    /// This worker's own values of `chunk`.
    private func ownPart(_ chunk: Int) -> UnsafeBufferPointer<Float> {
        UnsafeBufferPointer(rebasing: own!.buffer[chunks[chunk]])
    }

    /// A payload of `chunk` of `payload`, sharing its memory (so shared memory sends it as a part
    /// of the slot it is in).
    private func view(_ payload: FloatPayload, _ chunk: Int) -> FloatPayload {
        let range = chunks[chunk]
        return FloatPayload(
            wrapping: payload.pointer + range.lowerBound, count: range.count,
            release: { withExtendedLifetime(payload) {} })
    }

    private mutating func take(_ key: Key) -> FloatPayload? {
        takeAll(key)?.first
    }

    private mutating func takeAll(_ key: Key) -> [FloatPayload]? {
        guard let payloads = inbox.removeValue(forKey: key) else { return nil }
        read += payloads
        return payloads
    }

    /// Whether the phase's messages pass on payloads other workers published, several at once.
    static func passesOn(_ phase: Phase) -> Bool { phase == .directory || phase == .result }

    /// Chunk `rank` summed in the fixed order from the other workers' parts (`part(sender)`) and
    /// this worker's own, then averaged: kept, and returned as the payload to send.
    @discardableResult
    private mutating func reduceOwnChunk(
        parts part: (Int) -> UnsafeBufferPointer<Float>, make: ([Float]) -> FloatPayload
    ) -> FloatPayload {
        let senders = (1..<workers).map { mod(rank + $0) }
        var sum = Array(part(senders[0]))
        for sender in senders.dropFirst() { Self.add(part(sender), to: &sum) }
        Self.add(ownPart(rank), to: &sum)
        return finishReduction(sum: sum, make: make)
    }

    private mutating func advance(make: ([Float]) -> FloatPayload) -> [Outgoing] {
        guard own != nil else { return [] }
        var outgoing: [Outgoing] = []
        switch variant {
        case .direct:
            if rank == Self.hub, !directoriesSent,
                (1..<workers).allSatisfy({ inbox[Key(phase: .contribution, chunk: 0, step: 0, sender: $0)] != nil })
            {
                directoriesSent = true
                var models = [own!]
                for sender in 1..<workers {
                    models.append(take(Key(phase: .contribution, chunk: 0, step: 0, sender: sender))!)
                }
                for owner in 1..<workers {
                    let parts = Self.directoryPublishers(for: owner, workers: workers).map { view(models[$0], owner) }
                    outgoing.append(Outgoing(phase: .directory, chunk: owner, step: 0, to: owner, payloads: parts))
                }
                let range = chunks[rank]
                // Kept by `finishReduction` and sent on in the hub's results, not as a message of its own.
                _ = withExtendedLifetime(models) {
                    reduceOwnChunk(parts: { UnsafeBufferPointer(rebasing: models[$0].buffer[range]) }, make: make)
                }
            }
            if rank != Self.hub, !reduced,
                let parts = takeAll(Key(phase: .directory, chunk: rank, step: 0, sender: Self.hub))
            {
                // `directoryPublishers` order: every other worker ascending, so worker j < rank is
                // at j and j > rank at j − 1.
                let rank = self.rank
                let average = withExtendedLifetime(parts) {
                    reduceOwnChunk(parts: { parts[$0 < rank ? $0 : $0 - 1].buffer }, make: make)
                }
                outgoing.append(Outgoing(phase: .allGather, chunk: rank, step: 0, to: Self.hub, payload: average))
            }
            if rank == Self.hub {
                for sender in 0..<workers where sender != rank && !filled.contains(sender) {
                    if let chunk = take(Key(phase: .allGather, chunk: sender, step: 0, sender: sender)) {
                        fill(sender, with: chunk)
                    }
                }
                if isComplete && !broadcast {
                    broadcast = true
                    for peer in 0..<workers where peer != rank {
                        let parts = Self.directoryPublishers(for: peer, workers: workers).map { averaged[$0]! }
                        outgoing.append(Outgoing(phase: .result, chunk: 0, step: 0, to: peer, payloads: parts))
                    }
                }
            } else if reduced, let parts = takeAll(Key(phase: .result, chunk: 0, step: 0, sender: Self.hub)) {
                for (chunk, part) in zip(Self.directoryPublishers(for: rank, workers: workers), parts) {
                    fill(chunk, with: part)
                }
            }
        case .ring:
            while reduceStep <= workers - 2,
                let partial = take(
                    Key(phase: .reduceScatter, chunk: mod(rank - 2 - reduceStep), step: reduceStep, sender: left))
            {
                let step = reduceStep
                reduceStep += 1
                let chunk = mod(rank - 2 - step)
                var sum = Array(partial.buffer)
                Self.add(ownPart(chunk), to: &sum)
                if step == workers - 2 {
                    let average = finishReduction(sum: sum, make: make)
                    outgoing.append(Outgoing(phase: .allGather, chunk: rank, step: 0, to: right, payload: average))
                } else {
                    outgoing.append(
                        Outgoing(phase: .reduceScatter, chunk: chunk, step: step + 1, to: right, payload: make(sum)))
                }
            }
            while gatherStep <= workers - 2,
                let chunk = take(
                    Key(phase: .allGather, chunk: mod(rank - 1 - gatherStep), step: gatherStep, sender: left))
            {
                let step = gatherStep
                gatherStep += 1
                fill(mod(rank - 1 - step), with: chunk)
                if step < workers - 2 {
                    outgoing.append(
                        Outgoing(
                            phase: .allGather, chunk: mod(rank - 1 - step), step: step + 1, to: right, payload: chunk))
                }
            }
        }
        return outgoing
    }

    /// sum ← sum + part (one rounding per value: BLAS's y ← 1·x + y).
    private static func add(_ part: UnsafeBufferPointer<Float>, to sum: inout [Float]) {
        precondition(part.count == sum.count)
        sum.withUnsafeMutableBufferPointer {
            BLAS.axpy(count: part.count, alpha: 1, x: part.baseAddress!, y: $0.baseAddress!)
        }
    }

    /// Scales this worker's chunk sum by 1/n, keeps it, and returns it as a payload to send.
    @discardableResult
    private mutating func finishReduction(sum: [Float], make: ([Float]) -> FloatPayload) -> FloatPayload {
        var average = sum
        average.scale(by: Float(1.0 / Double(workers)))
        reduced = true
        let payload = make(average)
        fill(rank, with: payload)
        return payload
    }

    private mutating func fill(_ chunk: Int, with payload: FloatPayload) {
        averaged[chunk] = payload
        filled.insert(chunk)
    }

    /// The average's chunks in order, read where they are (`isComplete`); valid while this round's
    /// value lives.
    var averageChunks: [AverageChunk] {
        precondition(isComplete, "the all-reduce is not complete")
        return (0..<workers).map { AverageChunk(range: chunks[$0], values: averaged[$0]!.buffer) }
    }

    /// The whole average, copied into one array (`isComplete`; for tests).
    var result: [Float] { averageChunks.reduce(into: []) { $0.append(contentsOf: $1.values) } }
}

extension RunConfiguration {
    /// Whether the gossip of every round is an exact average over all workers (the complete graph
    /// with uniform weights 1/n: C-SGD, and any graph whose weights make it so, such as a ring of
    /// three), which then runs as an all-reduce (`AllReduceRound`) unless `allowsAllReduce` is off.
    public var usesAllReduce: Bool {
        guard allowsAllReduce, algorithm.ruleType.combinesAverages, federated == nil, workers >= 2,
            case .fixed(let topology) = topology,
            topology.nodeCount == workers,
            !topology.requiresPushSum
        else { return false }
        let uniform = 1.0 / Double(workers)
        return topology.mixing.allSatisfy { row in
            row.count == workers && row.allSatisfy { abs($0.weight - uniform) <= 1e-12 }
        }
    }
}
