import Foundation
import Runtime
import XCTest

/// NaN and ±Infinity in records: written as JSON null with the reason beside them, read back
/// exactly, and files of earlier versions (strings "nan", "inf") still read.
final class NonFiniteJSONTests: XCTestCase {
    private func record() -> RoundRecord {
        var record = RoundRecord(
            round: 7, trainLoss: .nan, trainLossMin: 0.5, trainLossMax: .infinity, learningRate: 0.1, bytesSent: 10,
            epoch: 1)
        record.consensusDistanceSquaredByLayer = ["layers.0.weight": .infinity, "layers.0.bias": 0.25]
        record.clientAccuracy = [0.5, -.infinity, 0.75]
        return record
    }

    func testNonFinite_IsNullInStandardJSON_WithTheReasonBesideIt() throws {
        let (data, nonFinite) = try NonFiniteJSON.encode(record())
        XCTAssertEqual(
            nonFinite,
            [
                "train_loss": "nan", "train_loss_max": "inf", "consensus_distance_sq_by_layer/layers.0.weight": "inf",
                "client_accuracy/1": "-inf",
            ])
        // Any JSON reader accepts it, and sees null where there is no number.
        let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        XCTAssertTrue(object["train_loss"] is NSNull)
        XCTAssertEqual(object["train_loss_min"] as? Double, 0.5)
        XCTAssertTrue((object["client_accuracy"] as? [Any])?[1] is NSNull)
        XCTAssertEqual(object["non_finite"] as? [String: String], nonFinite)
    }

    func testNonFinite_RoundTripsExactly() throws {
        let decoded = try NonFiniteJSON.decode(RoundRecord.self, from: try NonFiniteJSON.encode(record()).data)
        XCTAssertTrue(decoded.trainLoss.isNaN)
        XCTAssertEqual(decoded.trainLossMax, .infinity)
        XCTAssertEqual(decoded.consensusDistanceSquaredByLayer?["layers.0.weight"], .infinity)
        XCTAssertEqual(decoded.consensusDistanceSquaredByLayer?["layers.0.bias"], 0.25)
        XCTAssertEqual(decoded.clientAccuracy?[1], -.infinity)
        XCTAssertEqual(decoded.round, 7)
    }

    /// Finite records are written as before (no extra field), and decode.
    func testFiniteRecords_AreUnchanged() throws {
        var finite = record()
        finite.trainLoss = 1
        finite.trainLossMax = 2
        finite.consensusDistanceSquaredByLayer = nil
        finite.clientAccuracy = nil
        let (data, nonFinite) = try NonFiniteJSON.encode(finite)
        XCTAssertTrue(nonFinite.isEmpty)
        XCTAssertFalse(String(decoding: data, as: UTF8.self).contains("non_finite"))
        XCTAssertEqual(try NonFiniteJSON.decode(RoundRecord.self, from: data), finite)
    }

    /// Run folders of earlier versions wrote "nan"/"inf" strings: they still read.
    func testLegacyStrings_StillDecode() throws {
        let legacy =
            #"{"round":3,"train_loss":"nan","train_loss_min":"-inf","train_loss_max":"inf","learning_rate":0.1,"bytes_sent":0,"epoch":0}"#
        let decoded = try NonFiniteJSON.decode(RoundRecord.self, from: Data(legacy.utf8))
        XCTAssertTrue(decoded.trainLoss.isNaN)
        XCTAssertEqual(decoded.trainLossMin, -.infinity)
    }

    /// A non_finite entry that names no null is an error, not a silent change.
    func testBadNonFiniteField_IsAnError() {
        let bad =
            #"{"round":3,"train_loss":1,"train_loss_min":1,"train_loss_max":1,"learning_rate":0.1,"bytes_sent":0,"epoch":0,"non_finite":{"train_loss":"nan"}}"#
        XCTAssertThrowsError(try NonFiniteJSON.decode(RoundRecord.self, from: Data(bad.utf8))) {
            XCTAssertTrue("\($0)".contains("no null at 'train_loss'"), "\($0)")
        }
    }
}
