import LearningCore

/// CHOCO-SGD (Koloskova, Stich and Jaggi, ICML 2019, Algorithm 2): gossip of compressed
/// differences. Worker i keeps public copies x̂ⱼ of itself and of every peer; in round t
///
///     x^{t+½}ᵢ = local steps from xᵢ^t
///     qᵢ = Q(x^{t+½}ᵢ − x̂ᵢ), sent to every peer;  x̂ⱼ ← x̂ⱼ + qⱼ for j = i and every peer j
///     xᵢ^{t+1} = x^{t+½}ᵢ + γ Σⱼ Wᵢⱼ (x̂ⱼ − x̂ᵢ)
///
/// with x̂ = 0 at the start, as in the paper. Every holder of x̂ⱼ applies the same qⱼ to it, so
/// the copies agree bit for bit. The consensus step is evaluated as
/// x ← x^{t+½} − γx̂ᵢ + γWᵢᵢx̂ᵢ + Σⱼ γWᵢⱼx̂ⱼ (Σⱼ Wᵢⱼ = 1), so that with the identity compressor
/// and γ = 1 (x̂ᵢ = x^{t+½}, the first two terms cancel exactly) it is D-SGD's ATC averaging
/// operation for operation. The identity's message is x̂ᵢ's new value itself (what
/// x̂ᵢ + (x^{t+½}ᵢ − x̂ᵢ) is in exact arithmetic): adding the difference in floating point would
/// differ in the last bit.
///
/// On a graph that changes between rounds a worker exchanges with every peer it is ever
/// connected to (over one period of the schedule, or all workers for random graphs), so its
/// copies stay current; only the round's neighbours are mixed.
public struct ChocoGossip: GossipRule {
    public let compressor: Compressor
    /// γ, the consensus step size.
    public let consensusStep: Float
    public let rank: Int
    /// Every peer this worker keeps a public copy of (ascending).
    public let peers: [Int]
    /// x̂ⱼ, keyed by worker (this one included).
    public private(set) var publicCopies: [Int: [Float]]
    private var generator: SplitMix64
    private let parameterCount: Int

    /// The random stream of random-k and QSGD (per worker).
    public static let compressionStream: UInt64 = 0xC40C0

    public init(context: GossipRuleContext, settings: GossipRuleSettings) {
        compressor = settings.compressor
        consensusStep = Float(settings.consensusStep)
        rank = context.rank
        peers = context.peersOverTheSchedule
        parameterCount = context.parameterCount
        let zero = [Float](repeating: 0, count: context.parameterCount)
        publicCopies = Dictionary(uniqueKeysWithValues: ([context.rank] + peers).map { ($0, zero) })
        generator = SplitMix64(seed: context.seed, stream: Self.compressionStream, substream: UInt64(context.rank))
    }

    public static var vectorsPerMessage: Int { 1 }

    public func exchangePeers(round: Int) -> (sendTo: [Int], receiveFrom: [Int])? { (peers, peers) }

    public func problem(with message: ReceivedGossip) -> String? {
        guard case .encoded(let bytes) = message else { return "a CHOCO-SGD message must be a compressed vector" }
        do { _ = try CompressedVector(decoding: bytes, count: parameterCount) } catch { return error.message }
        return nil
    }

    public mutating func localUpdate(_ x: inout [Float], steps: inout LocalSteps, round: Int) -> (
        meanLoss: Double, learningRate: Double
    ) {
        steps.train(&x, round: round)
    }

    public mutating func message(_ x: [Float], round: Int) -> GossipMessage {
        var own = publicCopies.removeValue(forKey: rank)!
        let q: CompressedVector
        if case .identity = compressor {
            // The new public copy itself (see the type's comment).
            q = CompressedVector(count: x.count, content: .dense(x))
        } else {
            var difference = x
            difference.addScaled(own, by: -1)
            q = difference.withUnsafeBufferPointer { compressor.compress($0, generator: &generator) }
        }
        Self.apply(q, to: &own)
        publicCopies[rank] = own
        return .encoded(q.encoded())
    }

    public mutating func combine(
        _ x: inout [Float], row: MixingRow, received: [Int: ReceivedGossip], sent: ReceivedGossip, round: Int
    ) {
        for (sender, message) in received.sorted(by: { $0.key < $1.key }) {
            guard case .encoded(let bytes) = message, var copy = publicCopies.removeValue(forKey: sender) else {
                preconditionFailure("CHOCO-SGD: a message from worker \(sender), which is not a peer")
            }
            // Checked on receipt (`problem(with:)`), so it decodes.
            Self.apply(try! CompressedVector(decoding: bytes, count: parameterCount), to: &copy)
            publicCopies[sender] = copy
        }
        let gamma = consensusStep
        x.addScaled(publicCopies[rank]!, by: -gamma)
        x.addScaled(publicCopies[rank]!, by: gamma * Float(row.selfWeight))
        for neighbor in row.neighbors {
            guard let copy = publicCopies[neighbor.rank] else {
                preconditionFailure("CHOCO-SGD: worker \(neighbor.rank) is a neighbour but not a peer")
            }
            x.addScaled(copy, by: gamma * Float(neighbor.weight))
        }
    }

    /// x̂ ← x̂ + q (for the identity, x̂ ← the message's value; see the type's comment).
    static func apply(_ q: CompressedVector, to copy: inout [Float]) {
        if case .dense(let values) = q.content {
            copy = values
        } else {
            q.add(to: &copy)
        }
    }
}

extension ChocoGossip {
    /// The public copies x̂ⱼ (this worker's and every peer's, by ascending rank) and the
    /// compression stream.
    public func save(to writer: inout StateWriter) {
        writer.section("CHOCO-SGD")
        let ranks = publicCopies.keys.sorted()
        writer.write(ranks)
        for rank in ranks { writer.write(publicCopies[rank]!) }
        writer.write(generator)
    }

    public mutating func restore(from reader: inout StateReader) throws(StateArchiveError) {
        try reader.expectSection("CHOCO-SGD")
        let ranks = try reader.readInts()
        guard ranks == publicCopies.keys.sorted() else {
            throw StateArchiveError(
                "CHOCO-SGD's public copies are of workers \(ranks), this worker keeps \(publicCopies.keys.sorted())")
        }
        var copies: [Int: [Float]] = [:]
        for rank in ranks {
            copies[rank] = try reader.readFloats(count: parameterCount, "the public copy of worker \(rank)")
        }
        publicCopies = copies
        generator = try reader.readGenerator()
    }
}
