import Diagnostics
import Foundation
import LearningCore
import Runtime
import Topologies
import Transport
import XCTest

/// The coordinator state machine under worker failures, fed events directly.
final class CoordinatorFailureTests: XCTestCase {
    private let runID: UInt64 = 5

    private func machine(policy: FailurePolicy, workers: Int = 3, rounds: Int = 4) -> (CoordinatorMachine, Int) {
        var configuration = smallConfiguration(workers: workers, rounds: rounds, metricsEvery: 1_000, evalEvery: 1_000)
        configuration.failurePolicy = policy
        configuration.sharpness.every = 0
        let machine = startedCoordinator(configuration, runID: runID)
        return (machine, Network(spec: configuration.model).parameterCount)
    }

    private func metrics(_ rank: Int, round: Int, parameters: Int?) -> Envelope {
        let body = WorkerMetrics(round: round, trainLoss: 1, learningRate: 0.1, bytesSent: 0, epoch: 0).encoded
        return Envelope(
            header: MessageHeader(kind: .metrics, runID: runID, round: Int64(round), sender: Int32(rank)),
            body: body,
            payload: parameters.map { FloatPayload(copying: [Float](repeating: Float(rank), count: $0)) })
    }

    private func finished(_ rank: Int) -> Envelope {
        let body = try! JSONEncoder().encode(
            SummaryForTests(rank: rank, peakResidentBytes: 1, bytesSent: 1, shardSize: 1))
        return Envelope(header: MessageHeader(kind: .finished, runID: runID, sender: Int32(rank)), body: Array(body))
    }

    func test_onWorkerSilent_continue_shouldRemoveItAndFinishWithTheSurvivors() {
        var (machine, count) = machine(policy: .continue)
        for rank in 0..<3 { _ = machine.onEnvelope(metrics(rank, round: 1, parameters: nil)) }
        _ = machine.onEnvelope(metrics(0, round: 2, parameters: nil))
        let directives = machine.onWorkerSilent(1, seconds: 6)
        XCTAssertEqual(machine.alive, [0, 2])
        let memberships = directives.compactMap {
            if case .send(let e, let p) = $0, e.header.kind == .membership { return p } else { return nil }
        }
        XCTAssertEqual(memberships, [Peer.worker(0), Peer.worker(2)])
        XCTAssertTrue(machine.configuration.topology.topology(atRound: 0).inNeighbors(of: 1).isEmpty)
        var completed = false
        for round in 2...4 {
            for rank in [0, 2] where !(rank == 0 && round == 2) {
                let out = machine.onEnvelope(metrics(rank, round: round, parameters: round == 4 ? count : nil))
                completed = completed || out.contains { if case .complete = $0 { return true } else { return false } }
            }
        }
        for rank in [0, 2] {
            let out = machine.onEnvelope(finished(rank))
            completed = completed || out.contains { if case .complete = $0 { return true } else { return false } }
        }
        XCTAssertTrue(completed, "the run completes with the survivors")
        XCTAssertEqual(machine.nextRoundToRecord, 5)
        XCTAssertEqual(machine.events.count, 1)
    }

    func test_onWorkerSilent_abort_shouldFailTheRun() {
        var (machine, _) = machine(policy: .abort)
        let directives = machine.onWorkerSilent(2, seconds: 5.5)
        guard case .fail(let reason) = directives.last else { return XCTFail("expected a failure") }
        XCTAssertTrue(reason.contains("worker 2"), reason)
        XCTAssertTrue(reason.contains("5.5 s"), reason)
    }

    /// A silence judged against the start allowance names the limit that was applied.
    func test_onWorkerSilent_withTheStartAllowance_namesIt() {
        var (machine, _) = machine(policy: .abort)
        let limit = 4 * machine.configuration.failureTimeoutSeconds
        let directives = machine.onWorkerSilent(2, seconds: limit + 0.5, limit: limit)
        guard case .fail(let reason) = directives.last else { return XCTFail("expected a failure") }
        XCTAssertTrue(reason.contains(String(format: "× 4.00 = %.1f s for", limit)), reason)
    }
}

/// A coordinator past its start barrier: every worker of `configuration` registered (rank r as
/// asked) and ready, no messages sent to them read back.
func startedCoordinator(_ configuration: RunConfiguration, runID: UInt64) -> CoordinatorMachine {
    var machine = CoordinatorMachine(configuration: configuration, runID: runID, testSet: nil)
    for rank in 0..<configuration.workers {
        let registration = try! JSONEncoder().encode(
            RegistrationForTests(
                nonce: UInt64(rank), endpoint: "e\(rank)", host: "h", processID: 1, requestedRank: rank))
        _ = machine.onEnvelope(
            Envelope(header: MessageHeader(kind: .register, runID: 0, sender: -1), body: Array(registration)))
    }
    for rank in 0..<configuration.workers {
        _ = machine.onEnvelope(Envelope(header: MessageHeader(kind: .ready, runID: runID, sender: Int32(rank))))
    }
    XCTAssertTrue(machine.isRunning)
    return machine
}

// Mirrors of the wire bodies (the real ones are internal to Runtime's encoding).
struct RegistrationForTests: Codable {
    var nonce: UInt64
    var endpoint: String
    var host: String
    var processID: Int32
    var requestedRank: Int?
}
final class FederatedFailureTests: XCTestCase {
    private let runID: UInt64 = 6

    /// A federated server of 3 clients sampling one per round, after registration and the barrier.
    private func server(policy: FailurePolicy) -> (CoordinatorMachine, RunConfiguration, Int) {
        var configuration = smallConfiguration(workers: 3, rounds: 4, metricsEvery: 1_000, evalEvery: 1_000)
        configuration.failurePolicy = policy
        configuration.sharpness.every = 0
        configuration.federated = FederatedSettings(clientFraction: 0.3, proximalMu: 0)
        configuration.topology = .fixed(try! .generated(.solo, nodeCount: 3))
        let machine = startedCoordinator(configuration, runID: runID)
        return (machine, configuration, Network(spec: configuration.model).parameterCount)
    }

    private func report(_ rank: Int, round: Int, sampled: Bool, count: Int, value: Float = 0.5) -> Envelope {
        var metrics = WorkerMetrics(round: round, trainLoss: 1, learningRate: 0.1, bytesSent: 0, epoch: 0)
        metrics.sampled = sampled
        metrics.shardSize = 10
        return Envelope(
            header: MessageHeader(kind: .metrics, runID: runID, round: Int64(round), sender: Int32(rank)),
            body: metrics.encoded,
            payload: sampled ? FloatPayload(copying: [Float](repeating: value, count: count)) : nil)
    }

    private func globalModels(_ directives: [CoordinatorDirective]) -> [FloatPayload] {
        directives.compactMap {
            if case .send(let e, _) = $0, e.header.kind == .globalModel { return e.payload } else { return nil }
        }
    }

    /// With --on-failure continue, when the only sampled client dies the round is recorded (no
    /// trap on an empty list of losses), every survivor gets the unchanged global model (x₀ in
    /// round 1, so nobody waits forever), and an event says why.
    func testEverySampledClientDead_RecordsTheRoundAndKeepsTheGlobalModel() {
        var (machine, configuration, count) = server(policy: .continue)
        let sampled = configuration.federated!.aggregator.sampledClients(round: 0, workers: 3, seed: configuration.seed)
        XCTAssertEqual(sampled.count, 1)
        let others = (0..<3).filter { !sampled.contains($0) }
        for rank in others { _ = machine.onEnvelope(report(rank, round: 1, sampled: false, count: count)) }
        let directives = machine.onWorkerSilent(sampled[0], seconds: 9)
        XCTAssertEqual(machine.alive, others)
        let records = directives.compactMap { if case .record(let r) = $0 { return r } else { return nil } }
        XCTAssertEqual(records.map(\.round), [1])
        XCTAssertTrue(records[0].trainLoss.isNaN)
        let initial = Network(spec: configuration.model).initialParameters(seed: configuration.seed)
        let sent = globalModels(directives)
        XCTAssertEqual(sent.count, 2)
        for model in sent { XCTAssertEqual(model.array, initial) }
        XCTAssertTrue(machine.events.contains { $0.contains("no client that trained this round is alive") })
    }

    /// A sampled client uploading Inf: the run fails with the reason (abort), or the client is
    /// dropped and the average never sees it (continue).
    func testInfiniteUpload_FailsOrDropsTheClient() {
        for policy in [FailurePolicy.abort, .continue] {
            var (machine, configuration, count) = server(policy: policy)
            let sampled = configuration.federated!.aggregator.sampledClients(
                round: 0, workers: 3, seed: configuration.seed)[0]
            let directives = machine.onEnvelope(
                report(sampled, round: 1, sampled: true, count: count, value: .infinity))
            let reason = "sent a model with NaN or Inf values for round 1"
            switch policy {
            case .abort:
                XCTAssertTrue(
                    directives.contains {
                        if case .fail(let r) = $0 { return r.contains(reason) } else { return false }
                    },
                    "\(directives)")
            case .continue:
                XCTAssertFalse(machine.alive.contains(sampled))
                XCTAssertTrue(machine.events.contains { $0.contains(reason) }, "\(machine.events)")
                var all: [CoordinatorDirective] = []
                for rank in machine.alive {
                    all += machine.onEnvelope(report(rank, round: 1, sampled: false, count: count))
                }
                for model in globalModels(all) { XCTAssertTrue(model.isFinite) }
                XCTAssertEqual(globalModels(all).count, 2)
            }
        }
    }
}

struct SummaryForTests: Codable {
    var rank: Int
    var peakResidentBytes: Int
    var bytesSent: Int
    var shardSize: Int
}
