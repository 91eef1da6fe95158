import Algorithms
import Datasets
import Diagnostics
import Foundation
import LearningCore
import Runtime
import Synchronization
import Topologies
import Transport
import XCTest

/// What the coordinator holds does not grow with the run's length or a stalled worker.
final class MemoryBoundTests: XCTestCase {
    /// 2,150 rounds: the shell keeps the last 1,000 records (past the batch trim at 2,000 held),
    /// and the summary (from running figures) is still about the whole run.
    func testLongRun_RetainsBoundedRecords_SummaryCoversEveryRound() throws {
        var configuration = smallConfiguration(
            workers: 2, rounds: 2_150, batchSize: 4, metricsEvery: 50, evalEvery: 500)
        configuration.model = ModelSpec(widths: [20, 10])
        configuration.topology = .fixed(try .ring(nodeCount: 2))
        configuration.evaluateWorkers = false
        let (coordinator, _) = try simulate(configuration)
        XCTAssertEqual(coordinator.records.count, CoordinatorShell.retainedRecords)
        XCTAssertEqual(coordinator.records.map(\.round), Array(1_151...2_150))
        let summary = coordinator.summary
        XCTAssertEqual(summary.rounds, 2_150)
        XCTAssertEqual(summary.finalTrainLoss, coordinator.records.last?.trainLoss)
        XCTAssertEqual(summary.finalTestAccuracy, coordinator.records.last?.testAccuracy)
        XCTAssertNotNil(summary.finalConsensusDistanceSquared)
    }

    /// Reports for rounds beyond the flow-control window are protocol violations, rejected rather
    /// than buffered: at most --max-rounds-ahead rounds of reports are ever held.
    func testReportsBeyondTheFlowControlWindow_AreRejected() throws {
        var configuration = smallConfiguration(workers: 2, rounds: 50, metricsEvery: 1_000, evalEvery: 1_000)
        configuration.sharpness.every = 0
        configuration.maxRoundsAhead = 3
        var machine = startedCoordinator(configuration, runID: 8)
        func report(round: Int) -> Envelope {
            let body = WorkerMetrics(round: round, trainLoss: 1, learningRate: 0.1, bytesSent: 0, epoch: 0).encoded
            return Envelope(header: MessageHeader(kind: .metrics, runID: 8, round: Int64(round), sender: 0), body: body)
        }
        for round in 1...3 { _ = machine.onEnvelope(report(round: round)) }
        XCTAssertEqual(machine.rejectedMessages, 0)
        _ = machine.onEnvelope(report(round: 4))
        XCTAssertEqual(machine.rejectedMessages, 1, "round 4 is past the window of 3 rounds from round 1")
    }

    /// The sharpness thread holds at most `maximumPendingJobs`: a faster producer waits.
    func testSharpnessQueue_IsBounded() throws {
        let network = Network(spec: ModelSpec(widths: [20, 12, 10]))
        let data = SyntheticClassification(featureCount: 20, trainCount: 64, testCount: 1).examples(Array(0..<64))
        var settings = SharpnessSettings()
        settings.lanczosIterations = 20
        settings.hutchinsonProbes = 8
        let runner = SharpnessRunner(network: network, evaluationSet: data, settings: settings, seed: 1)
        let x = network.initialParameters(seed: 1)
        let submitted = Atomic<Int>(0)
        let producer = Thread {
            for round in 1...10 {
                runner.submit(SharpnessJob(round: round, learningRate: 0.1, average: x, workers: [], workerRanks: []))
                submitted.add(1, ordering: .relaxed)
            }
        }
        producer.start()
        var highest = 0
        var finished = 0
        while finished < 10 {
            highest = max(highest, runner.pending)
            finished += runner.drain().count
            usleep(1_000)
        }
        XCTAssertLessThanOrEqual(highest, SharpnessRunner.maximumPendingJobs)
        XCTAssertEqual(submitted.load(ordering: .relaxed), 10)
        runner.close()
    }
}
