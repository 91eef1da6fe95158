import Foundation
import LearningCore
import Runtime
import Topologies
import Transport
import XCTest

/// Gossip workers send the reports of rounds that carry no model a few at a time, in one message.
final class ReportBatchTests: XCTestCase {
    private func report(_ round: Int, loss: Double = 1) -> WorkerMetrics {
        var metrics = WorkerMetrics(round: round, trainLoss: loss, learningRate: 0.1, bytesSent: 10 * round, epoch: 0)
        if round % 2 == 0 { metrics.additiveMu = 0.5 * Double(round) }
        return metrics
    }

    func testBatchBodyRoundTripsAndIsBounded() throws {
        let batch = (3...6).map { report($0, loss: 1 / Double($0)) }
        let body = WorkerMetrics.encoded(batch: batch)
        XCTAssertEqual(body.count, 4 * batch[0].encoded.count, "each report's encoding has a fixed length")
        let decoded = try WorkerMetrics.decodedBatch(body, atMost: 4)
        XCTAssertEqual(decoded.map(\.round), [3, 4, 5, 6])
        XCTAssertEqual(decoded.map(\.trainLoss), batch.map(\.trainLoss))
        XCTAssertEqual(decoded.map(\.bytesSent), batch.map(\.bytesSent))
        XCTAssertEqual(decoded.map(\.additiveMu), batch.map(\.additiveMu))
        // More reports than the receiver's window, a cut-off report, a single report's decoder
        // given several, and an empty body: each refused with the reason.
        XCTAssertThrowsError(try WorkerMetrics.decodedBatch(body, atMost: 3)) {
            XCTAssertTrue("\($0)".contains("more than 3 reports"), "\($0)")
        }
        XCTAssertThrowsError(try WorkerMetrics.decodedBatch(Array(body.dropLast(3)), atMost: 8))
        XCTAssertThrowsError(try WorkerMetrics(decoding: body))
        XCTAssertThrowsError(try WorkerMetrics.decodedBatch([], atMost: 8))
        XCTAssertEqual(try WorkerMetrics(decoding: batch[1].encoded).round, 4)
    }

    // MARK: The coordinator

    private let runID: UInt64 = 9

    private func runningCoordinator(workers: Int, rounds: Int, metricsEvery: Int) -> CoordinatorMachine {
        var configuration = smallConfiguration(
            workers: workers, rounds: rounds, metricsEvery: metricsEvery, evalEvery: 1_000)
        configuration.sharpness.every = 0
        configuration.evaluateWorkers = false
        return startedCoordinator(configuration, runID: runID)
    }

    private func message(_ rank: Int, rounds: ClosedRange<Int>, model: Int? = nil) -> Envelope {
        Envelope(
            header: MessageHeader(kind: .metrics, runID: runID, round: Int64(rounds.upperBound), sender: Int32(rank)),
            body: WorkerMetrics.encoded(batch: rounds.map { report($0, loss: Double(rank + 1) * Double($0)) }),
            payload: model.map { FloatPayload(copying: [Float](repeating: Float(rank), count: $0)) })
    }

    private func records(_ directives: [CoordinatorDirective]) -> [RoundRecord] {
        directives.compactMap { if case .record(let record) = $0 { return record } else { return nil } }
    }

    private func rejections(_ directives: [CoordinatorDirective]) -> [String] {
        directives.compactMap {
            if case .log(let line) = $0, line.contains("rejected") { return line } else { return nil }
        }
    }

    func testCoordinatorRecordsBatchesAsItRecordsSingleReports() {
        let parameters = Network(spec: smallConfiguration(workers: 3).model).parameterCount
        var single = runningCoordinator(workers: 3, rounds: 6, metricsEvery: 6)
        var batched = runningCoordinator(workers: 3, rounds: 6, metricsEvery: 6)
        var fromSingles: [RoundRecord] = []
        var fromBatches: [RoundRecord] = []
        for round in 1...6 {
            for rank in 0..<3 {
                fromSingles += records(
                    single.onEnvelope(message(rank, rounds: round...round, model: round == 6 ? parameters : nil)))
            }
        }
        // Worker 0 sends rounds 1–4 and then 5–6 with its model; worker 1 one at a time up to 3,
        // then 4–6; worker 2 rounds 1–2, 3–5, 6.
        let plan: [(Int, ClosedRange<Int>)] = [
            (0, 1...4), (1, 1...1), (2, 1...2), (1, 2...2), (1, 3...3), (2, 3...5), (0, 5...6), (1, 4...6), (2, 6...6),
        ]
        for (rank, rounds) in plan {
            let out = batched.onEnvelope(message(rank, rounds: rounds, model: rounds.contains(6) ? parameters : nil))
            XCTAssertEqual(rejections(out), [], "worker \(rank), rounds \(rounds)")
            fromBatches += records(out)
        }
        XCTAssertEqual(fromBatches.map(\.round), [1, 2, 3, 4, 5, 6])
        XCTAssertEqual(fromBatches.map(\.round), fromSingles.map(\.round))
        XCTAssertEqual(fromBatches.map(\.trainLoss), fromSingles.map(\.trainLoss))
        XCTAssertEqual(fromBatches.map(\.trainLossMax), fromSingles.map(\.trainLossMax))
        XCTAssertEqual(fromBatches.map(\.bytesSent), fromSingles.map(\.bytesSent))
        XCTAssertEqual(fromBatches.map(\.additiveMu), fromSingles.map(\.additiveMu))
        XCTAssertNotNil(fromBatches.last?.consensusDistanceSquared)
        XCTAssertEqual(fromBatches.last?.consensusDistanceSquared, fromSingles.last?.consensusDistanceSquared)
    }

    func testCoordinatorRefusesMalformedBatchesWhole() {
        let parameters = Network(spec: smallConfiguration(workers: 3).model).parameterCount
        var machine = runningCoordinator(workers: 3, rounds: 12, metricsEvery: 2)
        // Round 2 carries a model (metrics every 2nd round), so it cannot sit inside a batch.
        XCTAssertEqual(rejections(machine.onEnvelope(message(0, rounds: 1...3, model: parameters))).count, 1)
        // Rounds out of order.
        let gap = Envelope(
            header: MessageHeader(kind: .metrics, runID: runID, round: 3, sender: 0),
            body: WorkerMetrics.encoded(batch: [report(1), report(3)]))
        XCTAssertEqual(rejections(machine.onEnvelope(gap)).count, 1)
        // A model round at the end of its batch without the model.
        XCTAssertEqual(rejections(machine.onEnvelope(message(0, rounds: 1...2))).count, 1)
        // Past the flow-control window (8 rounds).
        XCTAssertEqual(rejections(machine.onEnvelope(message(0, rounds: 9...9))).count, 1)
        // Nothing of a refused batch was kept: the same rounds are accepted afterwards.
        XCTAssertEqual(rejections(machine.onEnvelope(message(0, rounds: 1...2, model: parameters))), [])
        XCTAssertEqual(rejections(machine.onEnvelope(message(0, rounds: 1...1))).count, 1, "a round reported twice")
    }

    // MARK: Whole runs

    /// Runs with windows from 1 to 9 in random delivery orders, and with checkpoints by count:
    /// every one completes (a worker never holds back a report the coordinator needs to let
    /// another go on), with the same records and models as one report per message, and sends a
    /// message per `reportBatch` rounds, not per round.
    func testBatchedRunsCompleteWithTheSameRecordsAndFewerMessages() throws {
        var base = smallConfiguration(workers: 5, rounds: 40, metricsEvery: 20, evalEvery: 20)
        base.sharpness.every = 0
        base.maxRoundsAhead = 1
        let reference = try simulate(base)
        let referenceRecords = reference.0.records
        XCTAssertEqual(referenceRecords.count, 40)
        for window in [2, 4, 5, 8, 9] {
            // nil: the nodes take turns; a seed: random delivery orders.
            for seed: UInt64? in [nil, 1, 2, 3] {
                var configuration = base
                configuration.maxRoundsAhead = window
                let checkpoints = seed == 3
                if checkpoints { configuration.checkpoints = CheckpointSettings(everyRounds: 7, everySeconds: nil) }
                let label = "window \(window), seed \(seed.map(String.init) ?? "none")"
                let hub = InMemoryHub(reorderingSeed: seed, recordingSends: true)
                let (coordinator, workers) = Simulation.run(
                    configuration: configuration, runID: 42, testSet: try DataLoader.loadTestSet(configuration.data),
                    report: nil, data: nil, progress: nil, log: { _ in }, interleavingSeed: seed, hub: hub,
                    checkpoints: checkpoints ? CheckpointStore(runDirectory: temporaryDirectory(label)) : nil)
                XCTAssertEqual(coordinator.outcome, .completed, label)
                XCTAssertTrue(
                    workers.map(\.machine.parameters) == reference.1.map(\.machine.parameters), "\(label): models")
                let records = coordinator.records
                XCTAssertEqual(records.map(\.round), referenceRecords.map(\.round), label)
                XCTAssertEqual(records.map(\.trainLoss), referenceRecords.map(\.trainLoss), label)
                XCTAssertEqual(records.map(\.bytesSent), referenceRecords.map(\.bytesSent), label)
                XCTAssertEqual(records.map(\.testAccuracy), referenceRecords.map(\.testAccuracy), label)
                XCTAssertEqual(
                    records.map(\.consensusDistanceSquared), referenceRecords.map(\.consensusDistanceSquared), label)
                // The fewest messages: batches of `window / 2` rounds, ended early by the rounds
                // that must go at once (20 and 40 carry a model; checkpoints every 7th).
                let ends = Set([20, 40] + (checkpoints ? Array(stride(from: 7, to: 40, by: 7)) : []))
                var fewest = 0
                var held = 0
                for round in 1...40 {
                    held += 1
                    if ends.contains(round) || held == max(1, window / 2) {
                        fewest += 1
                        held = 0
                    }
                }
                for rank in 0..<5 {
                    let sent = hub.sent.filter {
                        $0.envelope.header.kind == .metrics && $0.from.contains("worker-\(rank)#")
                    }.count
                    if seed == nil {
                        XCTAssertEqual(sent, fewest, "\(label), worker \(rank)")
                    } else {
                        // A worker about to wait for the coordinator sends what it holds; with
                        // messages delivered late, that can happen a few times a run.
                        XCTAssertGreaterThanOrEqual(sent, fewest, "\(label), worker \(rank)")
                        XCTAssertLessThanOrEqual(sent, fewest + 4, "\(label), worker \(rank)")
                    }
                }
            }
        }
    }

    private func temporaryDirectory(_ label: String) -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent(
            "report-batch-\(ProcessInfo.processInfo.processIdentifier)-\(label.replacingOccurrences(of: " ", with: "-"))"
        )
        try? FileManager.default.removeItem(at: url)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }
}
