import FoundationEssentials
import LearningCore
import RunRecords
import Topologies
import Transport

/// worker → coordinator.
public struct Registration: Codable, Sendable {
    public var nonce: UInt64
    public var endpoint: String
    public var host: String
    public var processID: Int32
    /// A rank the launcher gave this worker (e.g. from mpirun's environment), if any.
    public var requestedRank: Int?
    /// What this worker found of its host's shared memory (nil: it did not look, as in simulation).
    public var sharedMemory: SharedMemoryReport?
}

/// coordinator → worker.
public struct Assignment: Codable, Sendable {
    public var rank: Int
    public var runID: UInt64
    public var configuration: RunConfiguration
    /// Inbox endpoint of every worker, by rank.
    public var workerEndpoints: [String]
    /// The nonce of the registration this answers: a worker accepts only the assignment that
    /// echoes its own random nonce, not the first one anyone sends.
    public var nonce: UInt64?
    /// Set when the run passes payloads through shared memory: the segments' shape.
    public var sharedPayloads: SharedPayloadPlan?
    /// A resumed run: the worker's state at the checkpoint's round, to restore before the barrier.
    public var resume: WorkerResume?

    public init(
        rank: Int, runID: UInt64, configuration: RunConfiguration, workerEndpoints: [String], nonce: UInt64? = nil,
        sharedPayloads: SharedPayloadPlan? = nil
    ) {
        self.sharedPayloads = sharedPayloads
        self.nonce = nonce
        self.rank = rank
        self.runID = runID
        self.configuration = configuration
        self.workerEndpoints = workerEndpoints
    }
}

/// worker → coordinator, once per round.
/// What a worker of a resumed run starts from: its state after `round` rounds, as it sent it
/// for the checkpoint.
public struct WorkerResume: Codable, Sendable {
    public var round: Int
    public var state: Data

    public init(round: Int, state: [UInt8]) {
        self.round = round
        self.state = Data(state)
    }
}

extension Assignment {
    /// The assignments of every worker of a run as message bodies: what they share (the
    /// configuration, with its topology, and the endpoints) is encoded once and spliced into each
    /// worker's own fields, so assigning n workers costs O(n), not n encodings of an O(n) topology.
    /// Each body decodes as an `Assignment`.
    public static func encodedBodies(
        runID: UInt64, configuration: RunConfiguration, workerEndpoints: [String], nonces: [UInt64],
        sharedPayloads: SharedPayloadPlan?, resume: (Int) -> WorkerResume?
    ) -> [[UInt8]] {
        struct Shared: Encodable {
            var configuration: RunConfiguration
            var workerEndpoints: [String]
            var sharedPayloads: SharedPayloadPlan?
        }
        struct Own: Encodable {
            var rank: Int
            var runID: UInt64
            var nonce: UInt64?
            var resume: WorkerResume?
        }
        // Both are non-empty JSON objects: `{shared…}` without its "}", a comma, `{own…}` without
        // its "{".
        let shared = Body.encode(
            Shared(configuration: configuration, workerEndpoints: workerEndpoints, sharedPayloads: sharedPayloads)
        ).dropLast()
        return nonces.indices.map { rank in
            let own = Body.encode(Own(rank: rank, runID: runID, nonce: nonces[rank], resume: resume(rank))).dropFirst()
            return Array(shared) + Array(",".utf8) + Array(own)
        }
    }
}

public struct WorkerMetrics: Codable, Sendable {
    /// 1-based round just completed.
    public var round: Int
    public var trainLoss: Double
    public var learningRate: Double
    /// Cumulative bytes this worker has sent so far.
    public var bytesSent: Int
    public var epoch: Int
    /// Federated mode: whether this client was sampled this round, and its shard size (the
    /// aggregation weight).
    public var sampled: Bool? = nil
    public var shardSize: Int? = nil
    /// The additive model's curriculum values λ_t and μ_t used in this round's loss.
    public var additiveLambda: Double? = nil
    public var additiveMu: Double? = nil
    /// The fraction of the additive model's shared part that is exactly zero.
    public var additiveGlobalZeroFraction: Double? = nil

    public init(round: Int, trainLoss: Double, learningRate: Double, bytesSent: Int, epoch: Int) {
        self.round = round
        self.trainLoss = trainLoss
        self.learningRate = learningRate
        self.bytesSent = bytesSent
        self.epoch = epoch
    }
}

/// worker → coordinator, at the end.
extension WorkerMetrics {
    /// The report every worker sends every round, in a compact binary form (fixed fields, each
    /// optional one behind a flag): the coordinator decodes n of them a round, which as JSON was a
    /// visible share of a many-worker run's time.
    public var encoded: [UInt8] {
        var writer = StateWriter()
        writer.write(Self.formatTag)
        writer.write(round)
        writer.write(trainLoss)
        writer.write(learningRate)
        writer.write(bytesSent)
        writer.write(epoch)
        writer.write(sampled.map { $0 ? 1 : 0 } ?? -1)
        writer.write(shardSize ?? -1)
        for value in [additiveLambda, additiveMu, additiveGlobalZeroFraction] {
            writer.write(value != nil)
            writer.write(value ?? 0)
        }
        return writer.bytes
    }

    static let formatTag: UInt64 = 0x5752_4B4D_4554_0001  // "WRKMET", 1

    /// Several consecutive rounds' reports in one message body: their encodings one after the
    /// other (each report's length is fixed, and each starts with its tag).
    public static func encoded(batch reports: [WorkerMetrics]) -> [UInt8] { reports.flatMap(\.encoded) }

    public init(decoding bytes: [UInt8]) throws(WireError) {
        let reports = try Self.decodedBatch(bytes, atMost: 1)
        guard let report = reports.first else { throw WireError.malformed("metrics body is not a valid report: empty") }
        self = report
    }

    /// The reports of a body written by `encoded(batch:)`: at least one and at most `limit`
    /// (the coordinator passes its flow-control window, so a body cannot make it hold more).
    public static func decodedBatch(_ bytes: [UInt8], atMost limit: Int) throws(WireError) -> [WorkerMetrics] {
        var reader = StateReader(bytes)
        var reports: [WorkerMetrics] = []
        do {
            repeat {
                guard reports.count < limit else {
                    throw StateArchiveError("more than \(limit) reports in one message")
                }
                reports.append(try WorkerMetrics(reading: &reader))
            } while !reader.isAtEnd
        } catch {
            throw WireError.malformed("metrics body is not a valid report: \(error)")
        }
        return reports
    }

    private init(reading reader: inout StateReader) throws(StateArchiveError) {
        guard try reader.readUInt64() == Self.formatTag else { throw StateArchiveError("not a metrics report") }
        round = try reader.readInt()
        trainLoss = try reader.readDouble()
        learningRate = try reader.readDouble()
        bytesSent = try reader.readInt()
        epoch = try reader.readInt()
        switch try reader.readInt() {
        case -1: sampled = nil
        case 0: sampled = false
        case 1: sampled = true
        case let other: throw StateArchiveError("sampled flag \(other)")
        }
        let shard = try reader.readInt()
        shardSize = shard < 0 ? nil : shard
        var optionals: [Double?] = []
        for _ in 0..<3 {
            let present = try reader.readBool()
            let value = try reader.readDouble()
            optionals.append(present ? value : nil)
        }
        (additiveLambda, additiveMu, additiveGlobalZeroFraction) = (optionals[0], optionals[1], optionals[2])
    }
}

public struct WorkerSummary: Codable, Sendable {
    public var rank: Int
    public var peakResidentBytes: Int
    /// Of which shared-memory pages (other processes' segments and its own) at the end.
    public var sharedResidentBytes: Int? = nil
    /// Its proportional share of those pages (each counted 1/k when k processes map it).
    public var sharedProportionalBytes: Int? = nil
    public var bytesSent: Int
    public var shardSize: Int
}

enum Body {
    /// JSON bodies; NaN and ±Infinity (a diverged personal model's loss, say) travel as the
    /// strings "nan", "inf" and "-inf", so encoding these plain structs cannot fail.
    static func encode<T: Encodable>(_ value: T) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.nonConformingFloatEncodingStrategy = .convertToString(
            positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        do {
            return Array(try encoder.encode(value))
        } catch {
            preconditionFailure("\(T.self) does not encode: \(error)")
        }
    }

    static func decode<T: Decodable>(_ type: T.Type, from envelope: Envelope) throws -> T {
        let decoder = JSONDecoder()
        decoder.nonConformingFloatDecodingStrategy = .convertFromString(
            positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        do {
            return try decoder.decode(type, from: Data(envelope.body))
        } catch {
            throw WireError.malformed("\(envelope.header.kind) body is not a valid \(type): \(error)")
        }
    }
}

extension Envelope {
    var estimatedWireBytes: Int { MessageHeader.byteCount + body.count + 4 * (payload?.wireSlotCount ?? 0) }
}

/// coordinator → workers: who is gone, and the topology the survivors use from now on.
public struct MembershipChange: Codable, Sendable {
    public var removed: [Int]
    public var topology: TopologySchedule
    public var reason: String
}
