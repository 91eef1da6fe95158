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
///   model once and sends each owner a descriptor of that owner's chunk; the owner sums the
///   chunk over all slots and publishes the average chunk. The averaged chunks are gathered by
///   one worker, the hub (rank 0), which publishes the whole average once and sends every worker
///   its descriptor: n(n − 1) + 2(n − 1) messages a round instead of 2n(n − 1) (each one wakes a
///   process, the largest cost of the complete graph on a few cores, `perf`), the same bits.
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
        /// `.direct`: the whole average, from the hub to every other worker (chunk 0, step 0).
        case result = 2

        /// The message kind that carries this phase's messages.
        var kind: MessageKind {
            switch self {
            case .reduceScatter: .reduceScatter
            case .allGather: .allGather
            case .result: .allReduceResult
            }
        }

        init?(kind: MessageKind) {
            switch kind {
            case .reduceScatter: self = .reduceScatter
            case .allGather: self = .allGather
            case .allReduceResult: self = .result
            default: return nil
            }
        }
    }

    /// `.direct`: the worker that gathers the averaged chunks and sends the whole average.
    static let hub = 0

    /// One message of the collective: a chunk (or partial sum) for one worker.
    struct Outgoing {
        var phase: Phase
        var chunk: Int
        var step: Int
        var to: Int
        var payload: FloatPayload
    }

    let variant: Variant
    let rank: Int
    let workers: Int
    let chunks: [Range<Int>]
    /// This worker's contribution (its snapshot of the round).
    private(set) var own: FloatPayload?
    private(set) var result: [Float]
    private var filled = Set<Int>()
    private struct Key: Hashable {
        var phase: Phase
        var chunk: Int
        var step: Int
        var sender: Int
    }
    private var inbox: [Key: FloatPayload] = [:]
    /// The ring's next step in each phase.
    private var reduceStep = 0
    private var gatherStep = 0
    private var reduced = false
    /// `.direct`, the hub: whether it has sent the whole average.
    private var broadcast = false
    /// Every payload read (checked for damage when the round completes: shared memory).
    private(set) var read: [FloatPayload] = []

    init(variant: Variant, rank: Int, workers: Int, count: Int) {
        self.variant = variant
        self.rank = rank
        self.workers = workers
        chunks = (0..<workers).map { c in (c * count / workers)..<((c + 1) * count / workers) }
        result = [Float](repeating: 0, count: count)
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
            if !reduced {
                let senders = (0..<workers).filter { sender in
                    sender != rank && inbox[Key(phase: .reduceScatter, chunk: rank, step: 0, sender: sender)] == nil
                }
                return "all-reduce: chunks to sum from workers \(senders)"
            }
            if rank != Self.hub { return "all-reduce: the whole average from worker \(Self.hub)" }
            return "all-reduce: averaged chunks from workers \((0..<workers).filter { !filled.contains($0) })"
        case .ring:
            let phase = reduced ? "all-gather" : "reduce-scatter"
            return
                "ring all-reduce: \(phase) step \(reduced ? gatherStep : reduceStep) from worker \(left)"
        }
    }

    /// Why a message may not be taken (nil: it fits); checked before it is buffered.
    func problem(phase: Phase, chunk: Int, step: Int, sender: Int, count: Int) -> String? {
        if phase == .result {
            guard variant == .direct, rank != Self.hub, sender == Self.hub, chunk == 0, step == 0 else {
                return
                    "a whole average from worker \(sender) (chunk \(chunk), step \(step)); only worker \(Self.hub) sends it"
            }
            guard count == result.count else { return "a whole average of \(count) values, not \(result.count)" }
            return inbox[Key(phase: phase, chunk: 0, step: 0, sender: sender)] == nil
                ? nil : "a duplicate whole average from worker \(sender)"
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
            if phase == .reduceScatter && chunk != rank { return "chunk \(chunk) sent to the owner of chunk \(rank)" }
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
        inbox[Key(phase: phase, chunk: chunk, step: step, sender: sender)] = payload
        return advance(make: make)
    }

    /// Contributes this worker's model and sends what can be sent now.
    mutating func start(own: FloatPayload, make: ([Float]) -> FloatPayload) -> [Outgoing] {
        precondition(own.count == result.count)
        self.own = own
        var outgoing: [Outgoing] = []
        if workers == 1 {
            finishReduction(sum: Array(own.buffer), sends: false, make: make)
            return []
        }
        switch variant {
        case .direct:
            for owner in 0..<workers where owner != rank {
                outgoing.append(
                    Outgoing(phase: .reduceScatter, chunk: owner, step: 0, to: owner, payload: view(own, owner)))
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
        guard let payload = inbox.removeValue(forKey: key) else { return nil }
        read.append(payload)
        return payload
    }

    private mutating func advance(make: ([Float]) -> FloatPayload) -> [Outgoing] {
        guard own != nil else { return [] }
        var outgoing: [Outgoing] = []
        switch variant {
        case .direct:
            if !reduced {
                let senders = (1..<workers).map { mod(rank + $0) }
                if senders.allSatisfy({ inbox[Key(phase: .reduceScatter, chunk: rank, step: 0, sender: $0)] != nil }) {
                    let parts = senders.map { take(Key(phase: .reduceScatter, chunk: rank, step: 0, sender: $0))! }
                    var sum = Array(parts[0].buffer)
                    for part in parts.dropFirst() { Self.add(part.buffer, to: &sum) }
                    Self.add(ownPart(rank), to: &sum)
                    if rank == Self.hub {
                        finishReduction(sum: sum, sends: false, make: make)
                    } else {
                        let average = finishReduction(sum: sum, make: make)!
                        outgoing.append(
                            Outgoing(phase: .allGather, chunk: rank, step: 0, to: Self.hub, payload: average))
                    }
                }
            }
            if rank == Self.hub {
                for sender in 0..<workers where sender != rank && !filled.contains(sender) {
                    if let chunk = take(Key(phase: .allGather, chunk: sender, step: 0, sender: sender)) {
                        fill(sender, with: chunk)
                    }
                }
                if isComplete && !broadcast {
                    broadcast = true
                    let whole = make(result)
                    for peer in 0..<workers where peer != rank {
                        outgoing.append(Outgoing(phase: .result, chunk: 0, step: 0, to: peer, payload: whole))
                    }
                }
            } else if reduced, let whole = take(Key(phase: .result, chunk: 0, step: 0, sender: Self.hub)) {
                // The hub's average holds this worker's own chunk as it computed it: the same bits.
                withExtendedLifetime(whole) { result.replaceSubrange(0..<result.count, with: whole.buffer) }
                filled = Set(0..<workers)
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
                    let average = finishReduction(sum: sum, make: make)!
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

    /// Scales this worker's chunk sum by 1/n and keeps it; returns it as a payload to send (made
    /// only when it is sent).
    @discardableResult
    private mutating func finishReduction(
        sum: [Float], sends: Bool = true, make: ([Float]) -> FloatPayload
    ) -> FloatPayload? {
        var average = sum
        average.scale(by: Float(1.0 / Double(workers)))
        reduced = true
        result.replaceSubrange(chunks[rank], with: average)
        filled.insert(rank)
        return sends ? make(average) : nil
    }

    private mutating func fill(_ chunk: Int, with payload: FloatPayload) {
        withExtendedLifetime(payload) { result.replaceSubrange(chunks[chunk], with: payload.buffer) }
        filled.insert(chunk)
    }
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
