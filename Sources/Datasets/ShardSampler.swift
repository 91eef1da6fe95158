import LearningCore

/// Draws mini-batches from one worker's shard without replacement, reshuffling at the start of
/// every local epoch (seeded by the run seed and the worker's rank). A batch that crosses an epoch
/// boundary takes the rest of the old epoch and continues in the new permutation, so every batch
/// has exactly `batchSize` rows and every example is used once per epoch.
public struct ShardSampler: Sendable {
    public let shard: Dataset
    public private(set) var epoch = 0
    private var order: [Int]
    private var position = 0
    private var generator: SplitMix64

    public init(shard: Dataset, seed: UInt64, rank: Int) {
        precondition(shard.count > 0, "empty shard")
        self.shard = shard
        generator = SplitMix64(seed: seed, stream: 0xBA7C, substream: UInt64(rank))
        order = Array(0..<shard.count)
        generator.shuffle(&order)
    }

    /// The shard indices of the next batch.
    public mutating func nextIndices(batchSize: Int) -> [Int] {
        var indices: [Int] = []
        indices.reserveCapacity(batchSize)
        while indices.count < batchSize {
            if position == order.count {
                epoch += 1
                position = 0
                generator.shuffle(&order)
            }
            let take = min(batchSize - indices.count, order.count - position)
            indices.append(contentsOf: order[position..<(position + take)])
            position += take
        }
        return indices
    }

    /// Fills the workspace's input and labels with the next batch.
    public mutating func fillNextBatch(_ workspace: NetworkWorkspace, batchSize: Int) {
        let indices = nextIndices(batchSize: batchSize)
        shard.copyRows(indices, into: workspace.input, labels: workspace.labels)
    }
}

extension ShardSampler: Checkpointable {
    /// The data order and position: the epoch, this epoch's permutation, where the next batch
    /// starts, and the shuffling stream.
    public func save(to writer: inout StateWriter) {
        writer.section("data order")
        writer.write(epoch)
        writer.write(order)
        writer.write(position)
        writer.write(generator)
    }

    public mutating func restore(from reader: inout StateReader) throws(StateArchiveError) {
        try reader.expectSection("data order")
        let epoch = try reader.readInt()
        let order = try reader.readInts()
        let position = try reader.readInt()
        guard order.count == shard.count, Set(order) == Set(0..<shard.count) else {
            throw StateArchiveError(
                "the data order is not a permutation of this shard's \(shard.count) examples (the shard differs)")
        }
        guard (0...order.count).contains(position), epoch >= 0 else {
            throw StateArchiveError("data position \(position) of \(order.count), epoch \(epoch)")
        }
        self.epoch = epoch
        self.order = order
        self.position = position
        generator = try reader.readGenerator()
    }
}
