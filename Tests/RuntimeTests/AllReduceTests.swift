import Algorithms
import Foundation
import LearningCore
import Runtime
import Transport
import XCTest

@testable import Machines

/// C-SGD's all-reduce against the dense average: every worker ends with the same bits, the direct
/// (shared-memory) and ring (ZeroMQ) ways agree bit for bit, whatever order messages arrive in,
/// and both equal (1/n)·Σⱼ xⱼ computed in Float64 within 1e-6 relative.
final class AllReduceTests: XCTestCase {
    /// Runs one round among `models.count` workers, delivering messages in a seeded random order
    /// (the ring keeps each link's order, as one ZeroMQ connection does). Returns each worker's
    /// result and the number of messages and floats sent.
    private func run(
        _ models: [[Float]], variant: AllReduceRound.Variant, seed: UInt64
    ) -> (results: [[Float]], messages: Int, floats: Int) {
        let n = models.count
        var workers = (0..<n).map { AllReduceRound(variant: variant, rank: $0, workers: n, count: models[0].count) }
        var queue: [(from: Int, message: AllReduceRound.Outgoing)] = []
        var generator = SplitMix64(seed: seed)
        var messages = 0
        var floats = 0
        func make(_ values: [Float]) -> FloatPayload { FloatPayload(copying: values) }
        // Workers start at different moments: some messages arrive before their receiver started.
        var order = Array(0..<n)
        generator.shuffle(&order)
        var started = Set<Int>()
        func enqueue(_ out: [AllReduceRound.Outgoing], from rank: Int) {
            messages += out.count
            floats += out.reduce(0) { $0 + $1.payloads.reduce(0) { $0 + $1.count } }
            queue += out.map { (rank, $0) }
        }
        func deliverSome() {
            while !queue.isEmpty, generator.next() % 3 != 0 {
                // Any queued message whose link has nothing older queued (per-link FIFO).
                let candidates = queue.indices.filter { index in
                    !queue[..<index].contains {
                        $0.from == queue[index].from && $0.message.to == queue[index].message.to
                    }
                }
                let pick = candidates[Int(generator.next() % UInt64(candidates.count))]
                let (from, message) = queue.remove(at: pick)
                let receiver = message.to
                XCTAssertNil(
                    workers[receiver].problem(
                        phase: message.phase, chunk: message.chunk, step: message.step, sender: from,
                        counts: message.payloads.map(\.count)))
                let out = workers[receiver].receive(
                    phase: message.phase, chunk: message.chunk, step: message.step, sender: from,
                    payloads: message.payloads, make: make)
                if started.contains(receiver) {
                    enqueue(out, from: receiver)
                } else {
                    XCTAssertTrue(out.isEmpty, "a worker that has not started sends nothing")
                }
            }
        }
        for rank in order {
            deliverSome()
            started.insert(rank)
            enqueue(workers[rank].start(own: FloatPayload(copying: models[rank]), make: make), from: rank)
        }
        while !queue.isEmpty { deliverSome() }
        XCTAssertTrue(workers.allSatisfy(\.isComplete), "\(variant) n=\(n): not complete")
        return (workers.map(\.result), messages, floats)
    }

    func testEveryWorkerHoldsTheSameAverage_DirectAndRingAgreeBitForBit_WithinFloat64Reference() {
        var generator = SplitMix64(seed: 11)
        for n in [1, 2, 3, 5, 8] {
            for count in [n, 37, 1_000] where count >= n {
                let models = (0..<n).map { _ in
                    (0..<count).map { _ in Float(Double(generator.next() % 2_000_001) / 1e6 - 1) * 3 }
                }
                let direct = run(models, variant: .direct, seed: UInt64(n * 1_000 + count))
                let ring = run(models, variant: .ring, seed: UInt64(n * 7_000 + count))
                let again = run(models, variant: .ring, seed: UInt64(n * 9_000 + count + 1))
                for results in [direct.results, ring.results, again.results] {
                    for result in results {
                        XCTAssertEqual(
                            result.map(\.bitPattern), direct.results[0].map(\.bitPattern), "n=\(n) d=\(count)")
                    }
                }
                // Dense reference in Float64: relative error of the whole vector (Float32 sums of n
                // terms: a few ulps, far below 1e-6).
                var reference = [Double](repeating: 0, count: count)
                for model in models { for i in 0..<count { reference[i] += Double(model[i]) / Double(n) } }
                let error = zip(direct.results[0], reference).reduce(0.0) { $0 + pow(Double($1.0) - $1.1, 2) }
                let norm = reference.reduce(0.0) { $0 + $1 * $1 }
                XCTAssertLessThan(error.squareRoot(), 1e-6 * norm.squareRoot(), "n=\(n) d=\(count)")
            }
        }
    }

    /// The ring sends 2(n − 1) chunks per worker, 2(n − 1)/n of the model. The direct way sends
    /// 4(n − 1) messages in all (the values are read in place from shared memory): each worker
    /// but the hub its model's descriptor to the hub, the hub each owner a directory of n − 1
    /// chunk descriptors, each owner its averaged chunk to the hub, the hub every worker the
    /// descriptors of the n − 1 averaged chunks it lacks.
    func testTraffic_RingSendsTwoTimesNMinusOneOverN_DirectFewerMessages() {
        let n = 6
        let count = 600
        let models = (0..<n).map { rank in (0..<count).map { Float($0 + rank) } }
        let ring = run(models, variant: .ring, seed: 3)
        XCTAssertEqual(ring.messages, n * 2 * (n - 1))
        XCTAssertEqual(ring.floats, n * 2 * (n - 1) * count / n)
        let direct = run(models, variant: .direct, seed: 3)
        XCTAssertEqual(direct.messages, 4 * (n - 1))
        XCTAssertEqual(
            direct.floats,
            (n - 1) * count + (n - 1) * (n - 1) * count / n + (n - 1) * count / n + (n - 1) * (n - 1) * count / n)
    }

    /// Messages that do not fit the protocol are refused before they are buffered: a chunk of the
    /// wrong length or index, a ring message not from the left neighbour or at a step out of
    /// range, a direct chunk sent to the wrong owner, an averaged chunk sent past the hub, a whole
    /// average not from the hub or not of the model's length, a duplicate.
    func testMisfitMessages_AreRefused() {
        var ring = AllReduceRound(variant: .ring, rank: 2, workers: 4, count: 40)
        XCTAssertNil(ring.problem(phase: .reduceScatter, chunk: 0, step: 0, sender: 1, count: 10))
        XCTAssertNotNil(ring.problem(phase: .reduceScatter, chunk: 0, step: 0, sender: 3, count: 10))
        XCTAssertNotNil(ring.problem(phase: .reduceScatter, chunk: 1, step: 0, sender: 1, count: 10))
        XCTAssertNotNil(ring.problem(phase: .reduceScatter, chunk: 0, step: 0, sender: 1, count: 9))
        XCTAssertNotNil(ring.problem(phase: .allGather, chunk: 1, step: 3, sender: 1, count: 10))
        XCTAssertNotNil(ring.problem(phase: .reduceScatter, chunk: 7, step: 0, sender: 1, count: 10))
        _ = ring.receive(
            phase: .reduceScatter, chunk: 0, step: 0, sender: 1,
            payload: FloatPayload(copying: [Float](repeating: 1, count: 10)),
            make: { FloatPayload(copying: $0) })
        XCTAssertNotNil(ring.problem(phase: .reduceScatter, chunk: 0, step: 0, sender: 1, count: 10), "duplicate")
        let direct = AllReduceRound(variant: .direct, rank: 2, workers: 4, count: 40)
        XCTAssertNotNil(direct.problem(phase: .reduceScatter, chunk: 2, step: 0, sender: 0, count: 10), "via the hub")
        XCTAssertNil(direct.problem(phase: .directory, chunk: 2, step: 0, sender: 0, counts: [10, 10, 10]))
        XCTAssertNotNil(
            direct.problem(phase: .directory, chunk: 2, step: 0, sender: 1, counts: [10, 10, 10]), "not the hub")
        XCTAssertNotNil(
            direct.problem(phase: .directory, chunk: 3, step: 0, sender: 0, counts: [10, 10, 10]), "not its chunk")
        XCTAssertNotNil(direct.problem(phase: .directory, chunk: 2, step: 0, sender: 0, counts: [10, 10]), "too few")
        XCTAssertNotNil(direct.problem(phase: .directory, chunk: 2, step: 0, sender: 0, counts: [10, 9, 10]))
        XCTAssertNotNil(direct.problem(phase: .contribution, chunk: 0, step: 0, sender: 1, count: 40), "not the hub")
        XCTAssertNotNil(ring.problem(phase: .directory, chunk: 2, step: 0, sender: 1, counts: [10, 10, 10]))
        XCTAssertNotNil(direct.problem(phase: .allGather, chunk: 1, step: 0, sender: 1, count: 10), "not the hub")
        XCTAssertNil(direct.problem(phase: .result, chunk: 0, step: 0, sender: 0, counts: [10, 10, 10]))
        XCTAssertNotNil(
            direct.problem(phase: .result, chunk: 0, step: 0, sender: 1, counts: [10, 10, 10]), "not from the hub")
        XCTAssertNotNil(direct.problem(phase: .result, chunk: 0, step: 0, sender: 0, count: 40), "not the chunks")
        XCTAssertNotNil(direct.problem(phase: .result, chunk: 1, step: 0, sender: 0, counts: [10, 10, 10]))
        let hub = AllReduceRound(variant: .direct, rank: AllReduceRound.hub, workers: 4, count: 40)
        XCTAssertNil(hub.problem(phase: .allGather, chunk: 1, step: 0, sender: 1, count: 10))
        XCTAssertNil(hub.problem(phase: .contribution, chunk: 0, step: 0, sender: 3, count: 40))
        XCTAssertNotNil(hub.problem(phase: .contribution, chunk: 0, step: 0, sender: 3, count: 10), "not a model")
        XCTAssertNotNil(hub.problem(phase: .contribution, chunk: 1, step: 0, sender: 3, count: 40))
        XCTAssertNotNil(hub.problem(phase: .directory, chunk: 0, step: 0, sender: 1, counts: [10, 10, 10]))
        XCTAssertNotNil(hub.problem(phase: .allGather, chunk: 1, step: 0, sender: 2, count: 10), "not its chunk")
        XCTAssertNotNil(
            hub.problem(phase: .result, chunk: 0, step: 0, sender: 1, counts: [10, 10, 10]), "the hub gets none")
        XCTAssertNotNil(
            ring.problem(phase: .result, chunk: 0, step: 0, sender: 1, counts: [10, 10, 10]), "the ring has none")
    }

    /// Only the complete graph with uniform weights 1/n is averaged by all-reduce.
    func testAllReduce_IsUsedForUniformCompleteGraphsOnly() throws {
        let complete = smallConfiguration(workers: 4, rounds: 2).with {
            $0.topology = .fixed(try! .generated(.complete, nodeCount: 4))
        }
        XCTAssertTrue(complete.usesAllReduce)
        let ring = smallConfiguration(workers: 4, rounds: 2).with {
            $0.topology = .fixed(try! .generated(.ring, nodeCount: 4))
        }
        XCTAssertFalse(ring.usesAllReduce)
        let federated = complete.with { $0.federated = FederatedSettings(clientFraction: 1, proximalMu: 0) }
        XCTAssertFalse(federated.usesAllReduce)
    }

    /// Whole runs of C-SGD (ATC and CTA, with a personal layer kept local): averaging by all-reduce
    /// gives the models that averaging by gossip messages gives (checked against the dense W·X
    /// elsewhere), to Float32 summation-order differences: 1e-5 relative after 8 rounds.
    func testRuns_MatchGossipAveraging_AtcAndCta() throws {
        for algorithm in [GossipAlgorithm.adaptThenCombine, .combineThenAdapt] {
            let configuration = smallConfiguration(workers: 4, rounds: 8).with {
                $0.topology = .fixed(try! .generated(.complete, nodeCount: 4))
                $0.algorithm = algorithm
                $0.personalLayers = ["layers.2"]
            }
            XCTAssertTrue(configuration.usesAllReduce)
            let (_, reduced) = try simulate(configuration)
            let (_, gossiped) = try simulate(configuration.with { $0.allowsAllReduce = false })
            for (a, b) in zip(reduced, gossiped) {
                let x = a.machine.model
                let y = b.machine.model
                let difference = zip(x, y).reduce(0.0) { $0 + Double($1.0 - $1.1) * Double($1.0 - $1.1) }
                let norm = y.reduce(0.0) { $0 + Double($1) * Double($1) }
                XCTAssertLessThan(difference.squareRoot(), 1e-5 * norm.squareRoot(), "\(algorithm)")
                XCTAssertNotEqual(x, [Float](repeating: 0, count: x.count))
            }
        }
    }

    /// A worker dies in the middle of an all-reduce after some survivors already completed the
    /// round with its chunks and moved on, while others still wait for them. The coordinator's
    /// removal arrives with the survivors a round apart: the ones behind finish the round by
    /// gossip, which needs the round's model of the ones ahead, so those send it again. Before
    /// that replay existed the ones behind waited forever (the flaky
    /// `SharedMemoryPayloadTests.testAllReduce_SurvivesAWorkerRemoval_TheHubOrAnOwner`). The replays, and the
    /// abandoned all-reduce's messages still in flight, are dropped without a rejection. Messages
    /// are delivered one at a time in FIFO order, so the interleaving is the same on every run.
    func testWorkerRemovedMidAllReduce_SurvivorsARoundApartAllFinish() throws {
        let n = 4
        let rounds = 4
        let dead = 3
        var configuration = smallConfiguration(workers: n, rounds: rounds)
        configuration.topology = .fixed(try .generated(.complete, nodeCount: n))
        XCTAssertTrue(configuration.usesAllReduce)
        let runID: UInt64 = 9
        func envelope(_ kind: MessageKind, round: Int = 0, body: [UInt8] = []) -> Envelope {
            Envelope(header: MessageHeader(kind: kind, runID: runID, round: Int64(round), sender: -1), body: body)
        }
        var machines: [WorkerMachine] = []
        var queue: [(to: Int, envelope: Envelope)] = []
        var failures: [String] = []
        func handle(_ directives: [WorkerDirective], of rank: Int) {
            for directive in directives {
                switch directive {
                case .send(let message, .worker(let peer)): queue.append((peer, message))
                case .trainLocally: handle(machines[rank].onTrainTurn(), of: rank)
                case .fail(let reason): failures.append("worker \(rank): \(reason)")
                case .log(let line) where line.contains("rejected"): failures.append(line)
                default: break
                }
            }
        }
        for rank in 0..<n {
            var machine = WorkerMachine(
                nonce: UInt64(rank), host: "h", processID: Int32(rank), requestedRank: rank, peakResidentBytes: { 0 })
            _ = machine.onStart(localEndpoint: "inmemory://\(rank)")
            let assignment = Assignment(
                rank: rank, runID: runID, configuration: configuration,
                workerEndpoints: (0..<n).map { "w\($0)" }, nonce: UInt64(rank))
            _ = machine.onEnvelope(envelope(.assignment, body: Array(try JSONEncoder().encode(assignment))))
            _ = machine.onShardLoaded(
                try DataLoader.loadShard(
                    configuration.data, partition: .iid, workers: n, seed: configuration.seed, rank: rank))
            machines.append(machine)
        }
        for rank in 0..<n {
            handle(machines[rank].onEnvelope(envelope(.acknowledge, round: rounds)), of: rank)
            handle(machines[rank].onEnvelope(envelope(.start)), of: rank)
        }
        var removedAt: [Int]?
        while !queue.isEmpty {
            let (to, message) = queue.removeFirst()
            if removedAt != nil && (to == dead || Int(message.header.sender) == dead) { continue }
            handle(machines[to].onEnvelope(message), of: to)
            let survivorRounds = machines.indices.filter { $0 != dead }.map { machines[$0].round }
            if removedAt == nil && Set(survivorRounds).count > 1 {
                // Some survivors finished round 1 with the dying worker's chunks, others did not.
                removedAt = survivorRounds
                let change = MembershipChange(
                    removed: [dead], topology: configuration.topology.removing([dead]), reason: "test")
                for rank in 0..<n where rank != dead {
                    handle(machines[rank].onEnvelope(envelope(.membership, body: Body.encode(change))), of: rank)
                }
            }
        }
        XCTAssertEqual(failures, [])
        let survivors = removedAt ?? []
        XCTAssertEqual(Set(survivors).count, 2, "the removal must catch the survivors a round apart: \(survivors)")
        for rank in 0..<n where rank != dead {
            XCTAssertEqual(machines[rank].round, rounds, "worker \(rank) stopped at round \(machines[rank].round + 1)")
        }
    }
}
