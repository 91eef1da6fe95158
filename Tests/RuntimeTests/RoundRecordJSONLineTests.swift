import Foundation
import LearningCore
import RunRecords
import XCTest

/// `RoundRecord.jsonLine` against its oracle, `JSONEncoder` with sorted keys: the same bytes for
/// records with any subset of fields and awkward numbers, and nil (the encoder's path) exactly when
/// the encoder would need its non-finite handling or string escaping.
final class RoundRecordJSONLineTests: XCTestCase {
    enum Kind { case integer, number, numbers, integers, map }

    /// Every key of the record and the kind of its value. A key added to `RoundRecord` without a
    /// line here fails `testEveryKey_HasAKind`, so new fields are always covered below.
    static let kinds: [String: Kind] = [
        "round": .integer, "train_loss": .number, "train_loss_min": .number, "train_loss_max": .number,
        "learning_rate": .number, "consensus_distance_sq": .number, "consensus_distance_sq_by_layer": .map,
        "average_model_norm": .number, "test_loss": .number, "test_accuracy": .number,
        "train_loss_average_model": .number, "train_accuracy_average_model": .number, "distance_from_init": .number,
        "distance_from_init_by_layer": .map, "worker_test_accuracy_mean": .number, "worker_test_accuracy_min": .number,
        "worker_test_accuracy_max": .number, "bytes_sent": .integer, "epoch": .number, "elapsed_seconds": .number,
        "topology_phase": .integer, "bytes_sent_by_worker": .integers, "workers_alive": .integer,
        "client_accuracy": .numbers, "client_accuracy_mean": .number, "client_accuracy_weighted_mean": .number,
        "client_accuracy_std": .number, "client_accuracy_worst": .number, "client_accuracy_worst_10pct": .number,
        "client_validation_accuracy": .numbers, "client_validation_accuracy_mean": .number,
        "client_validation_accuracy_worst": .number, "additive_lambda": .number, "additive_mu": .number,
        "additive_global_zero_fraction": .number,
    ]
    static let required: Set<String> = [
        "round", "train_loss", "train_loss_min", "train_loss_max", "learning_rate", "bytes_sent", "epoch",
    ]

    func testEveryKey_HasAKind() {
        XCTAssertEqual(Set(RoundRecord.CodingKeys.allCases.map(\.rawValue)), Set(Self.kinds.keys))
    }

    /// Numbers whose text is easy to get wrong: integral values (".0" dropped), exponents both
    /// ways, the smallest subnormal, negative zero, long mantissas.
    static let awkward: [Double] = [
        0, -0.0, 1, 100, 1e15, 1e16, 1.5e300, 5e-324, 2.2250738585072014e-308, 1e-5, 0.0001, 0.1, 1.0 / 3,
        -2.5, 123456789.125, 0.8254, Double(Float(0.1)), 4.0e-7, -1e-300, 9007199254740993,
    ]

    func number(_ random: inout SplitMix64) -> Double {
        switch random.next() % 4 {
        case 0: return Self.awkward[Int(random.next() % UInt64(Self.awkward.count))]
        case 1: return Double(bitPattern: random.next() & 0x7FEF_FFFF_FFFF_FFFF) * (random.next() % 2 == 0 ? 1 : -1)
        case 2: return Double(random.next() % 10_000) / 1000
        default: return Double(Float(bitPattern: UInt32(truncatingIfNeeded: random.next()) & 0x7F7F_FFFF))
        }
    }

    func value(_ kind: Kind, _ random: inout SplitMix64) -> Any {
        switch kind {
        case .integer: return Int(random.next() % 1_000_000)
        case .number: return number(&random)
        case .numbers: return (0..<Int(random.next() % 5)).map { _ in number(&random) }
        case .integers: return (0..<Int(random.next() % 5)).map { _ in Int(random.next() % 100_000_000) }
        case .map:
            let names = ["layer0.weight", "layer0.bias", "fc-2_w", "Conv 1", "b", "a", "B", "aa", "Z9"]
            var map: [String: Double] = [:]
            for _ in 0..<Int(random.next() % 5) {
                map[names[Int(random.next() % UInt64(names.count))]] = number(&random)
            }
            return map
        }
    }

    /// A record with the required fields and each other field present with probability `present`.
    func record(_ random: inout SplitMix64, present: Double) throws -> RoundRecord {
        var object: [String: Any] = [:]
        for (key, kind) in Self.kinds
        where Self.required.contains(key) || Double(random.next() % 1000) / 1000 < present {
            object[key] = value(kind, &random)
        }
        let data = try JSONSerialization.data(withJSONObject: object)
        return try JSONDecoder().decode(RoundRecord.self, from: data)
    }

    func encoded(_ record: RoundRecord) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return Array(try encoder.encode(record))
    }

    func testLines_AreTheEncodersBytes_ForAnySubsetOfFields() throws {
        var random = SplitMix64(seed: 11)
        for present in [0.0, 0.1, 0.5, 0.9, 1.0] {
            for _ in 0..<200 {
                let record = try record(&random, present: present)
                let line = try XCTUnwrap(record.jsonLine, "declined a record that needs no escaping")
                let expected = try encoded(record)
                XCTAssertEqual(
                    String(decoding: line, as: UTF8.self), String(decoding: expected, as: UTF8.self),
                    "present \(present)")
                XCTAssertEqual(try JSONDecoder().decode(RoundRecord.self, from: Data(line)), record)
            }
        }
    }

    func testTheDefaultRunsRecords_AreTheEncodersBytes() throws {
        var record = RoundRecord(
            round: 500, trainLoss: 0.4711, trainLossMin: 0.3, trainLossMax: 0.61, learningRate: 0.05,
            bytesSent: 4_320_000_000, epoch: 2.0)
        XCTAssertEqual(record.jsonLine, try encoded(record))
        record.consensusDistanceSquared = 1.25e-4
        record.consensusDistanceSquaredByLayer = ["dense0.weight": 1e-4, "dense0.bias": 2.5e-5]
        record.elapsedSeconds = 1.731
        record.testAccuracy = 0.8254
        record.bytesSentByWorker = [1_080_000, 2_160_000]
        XCTAssertEqual(record.jsonLine, try encoded(record))
    }

    func testNonFiniteNumbersAndEscapedNames_AreLeftToTheEncoder() throws {
        let base = RoundRecord(
            round: 1, trainLoss: 1, trainLossMin: 1, trainLossMax: 1, learningRate: 0.1, bytesSent: 0, epoch: 0)
        XCTAssertNotNil(base.jsonLine)
        for bad in [Double.nan, .infinity, -.infinity] {
            var record = base
            record.trainLoss = bad
            XCTAssertNil(record.jsonLine)
            record = base
            record.clientAccuracy = [0.5, bad]
            XCTAssertNil(record.jsonLine)
            record = base
            record.distanceFromInitByLayer = ["w": bad]
            XCTAssertNil(record.jsonLine)
        }
        for name in ["conv/weight", "a\"b", "back\\slash", "tab\t", "π"] {
            var record = base
            record.consensusDistanceSquaredByLayer = [name: 1]
            XCTAssertNil(record.jsonLine, name)
            // What the run report writes instead: the encoder's line, which decodes back.
            let (data, nonFinite) = try NonFiniteJSON.encode(record)
            XCTAssertEqual(nonFinite, [:])
            XCTAssertEqual(try NonFiniteJSON.decode(RoundRecord.self, from: data), record)
        }
    }
}
