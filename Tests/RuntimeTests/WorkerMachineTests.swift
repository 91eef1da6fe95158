import Datasets
import Foundation
import LearningCore
import Runtime
import Topologies
import Transport
import XCTest

/// The worker state machine fed events directly: no sockets, no sleeps.
final class WorkerMachineTests: XCTestCase {
    private let runID: UInt64 = 77

    /// A ring of 4; this is worker 1, whose neighbours are 0 and 2.
    private func startedWorker(rounds: Int = 5, personal: [String] = []) throws -> (WorkerMachine, RunConfiguration) {
        var configuration = smallConfiguration(workers: 4, rounds: rounds)
        configuration.personalLayers = personal
        var machine = WorkerMachine(nonce: 1, host: "h", processID: 1, requestedRank: 1, peakResidentBytes: { 0 })
        _ = machine.onStart(localEndpoint: "inmemory://w1")
        let assignment = Assignment(
            rank: 1, runID: runID, configuration: configuration, workerEndpoints: ["a", "b", "c", "d"], nonce: 1)
        let body = Array(try JSONEncoder().encode(assignment))
        let directives = machine.onEnvelope(
            Envelope(header: MessageHeader(kind: .assignment, runID: runID, sender: -1), body: body))
        let connected: [Peer] = directives.compactMap {
            if case .connect(let peer, _) = $0 { return peer } else { return nil }
        }
        XCTAssertEqual(connected, [Peer.worker(0), Peer.worker(2)])
        let shard = try DataLoader.loadShard(
            configuration.data, partition: .iid, workers: 4, seed: configuration.seed, rank: 1)
        _ = machine.onShardLoaded(shard)
        let start = machine.onEnvelope(Envelope(header: MessageHeader(kind: .start, runID: runID, sender: -1)))
        XCTAssertTrue(start.contains { if case .trainLocally = $0 { return true } else { return false } })
        return (machine, configuration)
    }

    private func parameters(from sender: Int, round: Int, count: Int, value: Float = 0.5, runID: UInt64? = nil)
        -> Envelope
    {
        Envelope(
            header: MessageHeader(
                kind: .parameters, runID: runID ?? self.runID, round: Int64(round), sender: Int32(sender)),
            payload: FloatPayload(copying: [Float](repeating: value, count: count)))
    }

    private func sends(_ directives: [WorkerDirective]) -> [(MessageKind, Peer, Int64)] {
        directives.compactMap {
            if case .send(let e, let peer) = $0 { return (e.header.kind, peer, e.header.round) } else { return nil }
        }
    }

    private func logs(_ directives: [WorkerDirective]) -> [String] {
        directives.compactMap { if case .log(let message) = $0 { return message } else { return nil } }
    }

    func test_onTrainTurn_shouldSendToBothNeighbors_andWaitForBoth() throws {
        var (machine, _) = try startedWorker()
        let count = machine.parameters.count
        let trained = machine.onTrainTurn()
        let sent = sends(trained)
        XCTAssertEqual(sent.map(\.0), [.parameters, .parameters])
        XCTAssertEqual(sent.map(\.1), [Peer.worker(0), Peer.worker(2)])
        XCTAssertTrue(
            sends(machine.onEnvelope(parameters(from: 0, round: 0, count: count))).isEmpty,
            "one neighbour is not enough")
        XCTAssertEqual(machine.round, 0)
        let combined = machine.onEnvelope(parameters(from: 2, round: 0, count: count))
        XCTAssertEqual(machine.round, 1)
        XCTAssertEqual(sends(combined).first?.0, .metrics)
    }

    func test_onParameters_shouldBufferLaterRounds_andNeverMixThemEarly() throws {
        var (machine, _) = try startedWorker()
        let count = machine.parameters.count
        _ = machine.onEnvelope(parameters(from: 0, round: 1, count: count, value: 100))
        _ = machine.onEnvelope(parameters(from: 2, round: 1, count: count, value: 100))
        _ = machine.onTrainTurn()
        XCTAssertEqual(machine.round, 0, "round-2 models must not complete round 1")
        let trainedModel = machine.parameters
        _ = machine.onEnvelope(parameters(from: 0, round: 0, count: count, value: 0))
        _ = machine.onEnvelope(parameters(from: 2, round: 0, count: count, value: 0))
        XCTAssertEqual(machine.round, 1)
        // Ring weights are 1/3 each: x ← x/3 + 0 + 0.
        for (after, before) in zip(machine.parameters, trainedModel) {
            XCTAssertEqual(after, before / 3, accuracy: 1e-6)
        }
        // Round 2 completes from the buffer as soon as this worker has trained.
        _ = machine.onTrainTurn()
        XCTAssertEqual(machine.round, 2)
    }

    func test_onParameters_shouldRejectStaleDuplicateForeignAndMalformed() throws {
        var (machine, _) = try startedWorker()
        let count = machine.parameters.count
        _ = machine.onTrainTurn()
        _ = machine.onEnvelope(parameters(from: 0, round: 0, count: count))
        XCTAssertTrue(
            logs(machine.onEnvelope(parameters(from: 0, round: 0, count: count))).first!.contains("duplicate"))
        // A live non-neighbour's model is kept (a membership change could make it an in-neighbour)
        // but never mixed; an unknown sender is rejected.
        XCTAssertTrue(logs(machine.onEnvelope(parameters(from: 3, round: 0, count: count))).isEmpty)
        XCTAssertTrue(
            logs(machine.onEnvelope(parameters(from: 9, round: 0, count: count))).first!.contains("not a live peer"))
        XCTAssertTrue(
            logs(machine.onEnvelope(parameters(from: 2, round: 0, count: count - 1))).first!.contains(
                "expected \(count)"))
        XCTAssertTrue(
            logs(machine.onEnvelope(parameters(from: 2, round: 0, count: count, value: .nan))).first!.contains("NaN"))
        XCTAssertTrue(
            logs(machine.onEnvelope(parameters(from: 2, round: 0, count: count, runID: 5))).first!.contains("run id"))
        XCTAssertTrue(
            logs(machine.onEnvelope(parameters(from: 2, round: 99, count: count))).first!.contains("0-based round 99"))
        XCTAssertEqual(machine.round, 0, "nothing rejected may complete the round")
        XCTAssertEqual(machine.rejectedMessages, 6)
        _ = machine.onEnvelope(parameters(from: 2, round: 0, count: count))
        XCTAssertEqual(machine.round, 1)
        XCTAssertTrue(
            logs(machine.onEnvelope(parameters(from: 2, round: 0, count: count))).first!.contains("at round 2"), "stale"
        )
    }

    private func acknowledge(_ recorded: Int) -> Envelope {
        Envelope(header: MessageHeader(kind: .acknowledge, runID: runID, round: Int64(recorded), sender: -1))
    }

    private func finishes(_ directives: [WorkerDirective]) -> Bool {
        directives.contains { if case .finish = $0 { return true } else { return false } }
    }

    /// Rounds at the ends of Int64 from the network are rejected, not trapped on (the old code
    /// computed round + 1 for its log line before checking the range).
    func test_onParameters_shouldRejectExtremeRounds_WithoutTrapping() throws {
        var (machine, _) = try startedWorker()
        let count = machine.parameters.count
        for round in [Int64.max, Int64.min, -1, 5] {
            let envelope = Envelope(
                header: MessageHeader(kind: .parameters, runID: runID, round: round, sender: 0),
                payload: FloatPayload(copying: [Float](repeating: 0.5, count: count)))
            let directives = machine.onEnvelope(envelope)
            XCTAssertTrue(logs(directives).first?.contains("0-based round \(round)") ?? false, "\(directives)")
        }
        XCTAssertEqual(machine.rejectedMessages, 4)
    }

    /// Before its assignment a worker accepts nothing else (an abort with run id 0 used to stop
    /// it; a heartbeat, which can overtake the assignment, is ignored without being refused), and
    /// only the assignment that echoes its registration's nonce; a valid-looking
    /// assignment whose configuration is out of range fails the worker with the reason.
    func test_beforeAssignment_onlyItsOwnAssignmentIsAccepted() throws {
        let configuration = smallConfiguration(workers: 4, rounds: 5)
        var machine = WorkerMachine(nonce: 1, host: "h", processID: 1, requestedRank: 1, peakResidentBytes: { 0 })
        _ = machine.onStart(localEndpoint: "x")
        let abort = machine.onEnvelope(
            Envelope(header: MessageHeader(kind: .abort, runID: 0, sender: -1), body: Array("stop".utf8)))
        XCTAssertFalse(abort.contains { if case .fail = $0 { return true } else { return false } }, "\(abort)")
        XCTAssertTrue(logs(abort).first?.contains("before this worker's assignment") ?? false)
        XCTAssertEqual(machine.rejectedMessages, 1)
        // A heartbeat may overtake the assignment (another connection): ignored, not refused.
        let beat = machine.onEnvelope(Envelope(header: MessageHeader(kind: .heartbeat, runID: runID, sender: -1)))
        XCTAssertTrue(beat.isEmpty, "\(beat)")
        XCTAssertEqual(machine.rejectedMessages, 1)
        XCTAssertNil(machine.configuration)
        func assignment(nonce: UInt64?, _ change: (inout RunConfiguration) -> Void = { _ in }) throws -> Envelope {
            var changed = configuration
            change(&changed)
            let body = try JSONEncoder().encode(
                Assignment(
                    rank: 1, runID: runID, configuration: changed, workerEndpoints: ["a", "b", "c", "d"], nonce: nonce))
            return Envelope(header: MessageHeader(kind: .assignment, runID: runID, sender: -1), body: Array(body))
        }
        for foreign in [nil, 2 as UInt64?] {
            XCTAssertTrue(logs(machine.onEnvelope(try assignment(nonce: foreign))).first?.contains("nonce") ?? false)
            XCTAssertNil(machine.configuration)
        }
        let bad = machine.onEnvelope(try assignment(nonce: 1) { $0.sharpness.perturbationSamples = -1 })
        XCTAssertTrue(
            bad.contains {
                if case .fail(let reason) = $0 {
                    return reason.contains("--perturbation-samples")
                } else {
                    return false
                }
            }, "\(bad)")
    }

    func test_lastRound_shouldReportFinished_andExitOnlyWhenReleased() throws {
        var (machine, _) = try startedWorker(rounds: 1)
        let count = machine.parameters.count
        _ = machine.onTrainTurn()
        _ = machine.onEnvelope(parameters(from: 0, round: 0, count: count))
        let last = machine.onEnvelope(parameters(from: 2, round: 0, count: count))
        XCTAssertEqual(sends(last).map(\.0), [.metrics, .finished])
        XCTAssertFalse(finishes(last), "must wait for the coordinator's release")
        XCTAssertFalse(finishes(machine.onEnvelope(acknowledge(1))))
        XCTAssertTrue(finishes(machine.onEnvelope(acknowledge(2))))
    }

    func test_flowControl_shouldWaitForTheCoordinator() throws {
        var configuration = smallConfiguration(workers: 2, rounds: 10)
        configuration.maxRoundsAhead = 2
        configuration.allowsAllReduce = false  // two workers average exactly: gossip messages here
        var machine = WorkerMachine(nonce: 1, host: "h", processID: 1, requestedRank: 0, peakResidentBytes: { 0 })
        _ = machine.onStart(localEndpoint: "x")
        let assignment = Assignment(
            rank: 0, runID: runID, configuration: configuration, workerEndpoints: ["a", "b"], nonce: 1)
        _ = machine.onEnvelope(
            Envelope(
                header: MessageHeader(kind: .assignment, runID: runID, sender: -1),
                body: Array(try JSONEncoder().encode(assignment))))
        _ = machine.onShardLoaded(
            try DataLoader.loadShard(configuration.data, partition: .iid, workers: 2, seed: 3, rank: 0))
        _ = machine.onEnvelope(Envelope(header: MessageHeader(kind: .start, runID: runID, sender: -1)))
        let count = machine.parameters.count
        func trainsNext(_ directives: [WorkerDirective]) -> Bool {
            directives.contains { if case .trainLocally = $0 { return true } else { return false } }
        }
        _ = machine.onTrainTurn()
        XCTAssertTrue(trainsNext(machine.onEnvelope(parameters(from: 1, round: 0, count: count))))
        _ = machine.onTrainTurn()
        XCTAssertFalse(
            trainsNext(machine.onEnvelope(parameters(from: 1, round: 1, count: count))), "2 rounds ahead: wait")
        XCTAssertEqual(machine.round, 2)
        // The neighbour, less constrained, sends its round-3 model while this worker waits: it must
        // be buffered, not combined into an untrained, unsent round.
        XCTAssertTrue(sends(machine.onEnvelope(parameters(from: 1, round: 2, count: count))).isEmpty)
        XCTAssertEqual(machine.round, 2)
        XCTAssertTrue(trainsNext(machine.onEnvelope(acknowledge(1))), "the coordinator caught up by one round")
        let trained = machine.onTrainTurn()
        XCTAssertEqual(
            sends(trained).map(\.0), [.parameters, .metrics], "sends its own model, then completes from the buffer")
        XCTAssertEqual(machine.round, 3)
    }

    func test_personalLayers_shouldNeverLeaveTheWorker() throws {
        var (machine, configuration) = try startedWorker(personal: ["layers.2"])
        let head = configuration.personalRanges(in: Network(spec: configuration.model).layout)
        let sent = machine.onTrainTurn().compactMap { directive -> FloatPayload? in
            if case .send(let envelope, _) = directive, envelope.header.kind == .parameters { return envelope.payload }
            return nil
        }
        XCTAssertEqual(sent.count, 2)
        for payload in sent {
            let values = payload.array
            for range in head { XCTAssertTrue(values[range].allSatisfy { $0 == 0 }, "personal slice sent") }
            XCTAssertFalse(values[0..<head[0].lowerBound].allSatisfy { $0 == 0 }, "shared slices are sent")
        }
        XCTAssertFalse(machine.parameters[head[0]].allSatisfy { $0 == 0 }, "the worker keeps its own head")
    }
}
