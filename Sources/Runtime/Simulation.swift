import Algorithms
import Datasets
import Diagnostics
import LearningCore
import Transport

/// All workers and the coordinator in one process over `InMemoryTransport`, driven round-robin
/// on one thread: the same state machines as the multi-process run, so the same seed gives the
/// same numbers, bit for bit.
///
/// With `interleavingSeed`, nodes are instead pumped in a seeded random order, a random number of
/// messages at a time, and each inbox delivers from a random sender (FIFO per sender only), as
/// between real processes: the tests use it to check that the numbers do not depend on timing.
public enum Simulation {
    public static func run(
        configuration: RunConfiguration, runID: UInt64, testSet: Dataset?, report: RunReport?, data: DataDescription?,
        progress: ProgressLine?, log: @escaping (String) -> Void,
        loadShard: ((Int, RunConfiguration) throws -> Dataset)? = nil, interleavingSeed: UInt64? = nil,
        spectralGap: Double? = nil, trainSubset: Dataset? = nil, sharpness: SharpnessRunner? = nil,
        statisticsSet: Dataset? = nil, hub: InMemoryHub? = nil, checkpoints: CheckpointStore? = nil,
        resume: ResumePoint? = nil, haltAfterRound: Int? = nil
    ) -> (coordinator: CoordinatorShell, workers: [WorkerShell]) {
        let hub = hub ?? InMemoryHub(reorderingSeed: interleavingSeed)
        var machine = CoordinatorMachine(
            configuration: configuration, runID: runID, testSet: testSet, trainSubset: trainSubset,
            statisticsSet: statisticsSet)
        var resumeProblem: String?
        if let resume {
            do { try machine.resume(from: resume.snapshot) } catch { resumeProblem = "cannot resume: \(error)" }
        }
        let coordinator = CoordinatorShell(
            machine: machine,
            transport: hub.makeTransport(name: "coordinator"), report: report, data: data, progress: progress, log: log)
        coordinator.spectralGap = spectralGap
        coordinator.sharpness = sharpness
        coordinator.checkpoints = checkpoints
        if let resume {
            coordinator.resume(records: resume.records, sharpness: resume.sharpness, event: resume.event)
        }
        if let resumeProblem {
            coordinator.fail(resumeProblem)
            return (coordinator, [])
        }
        // The workers take turns on this thread: one training scratch serves them all.
        let scratch = TrainingScratchPool()
        let workers = (0..<configuration.workers).map { index in
            var machine = WorkerMachine(
                nonce: UInt64(index), host: "simulation", processID: 0, requestedRank: index,
                peakResidentBytes: ProcessResources.peakResidentBytes)
            machine.trainingScratch = scratch
            let transport = hub.makeTransport(name: "worker-\(index)")
            if let loadShard {
                return WorkerShell(machine: machine, transport: transport, log: log, loadShard: loadShard)
            }
            return WorkerShell(machine: machine, transport: transport, log: log)
        }
        for worker in workers { worker.start(coordinatorEndpoint: coordinator.transport.localEndpoint) }
        if let interleavingSeed {
            runInterleaved(coordinator: coordinator, workers: workers, hub: hub, seed: interleavingSeed)
        }
        while coordinator.outcome == .running {
            // A stand-in for a process killed mid-run (tests): everything stops where it is.
            if let haltAfterRound, coordinator.machine.nextRoundToRecord > haltAfterRound {
                return (coordinator, workers)
            }
            coordinator.checkpointByWallTime()
            var progressed = false
            for worker in workers {
                while worker.step(timeoutMilliseconds: 0) { progressed = true }
                if case .failed(let reason) = worker.outcome {
                    // The worker's abort message is in the coordinator's inbox; let it be read.
                    while coordinator.step(timeoutMilliseconds: 0) {}
                    if coordinator.outcome == .running {
                        coordinator.fail("worker \(worker.machine.rank ?? -1): \(reason)")
                    }
                    return (coordinator, workers)
                }
            }
            while coordinator.step(timeoutMilliseconds: 0) { progressed = true }
            if !progressed, let delayed = workers.first(where: \.hasDelayedSends) {
                delayed.flushDelayedSends(force: true)
                continue
            }
            if !progressed && coordinator.outcome == .running {
                coordinator.fail(
                    "simulation stalled: no messages in flight while waiting for \(coordinator.machine.waitingOn)")
            }
        }
        // Deliver the coordinator's final acknowledgements, so the workers finish too.
        for worker in workers { while worker.step(timeoutMilliseconds: 0) {} }
        return (coordinator, workers)
    }

    private static func runInterleaved(
        coordinator: CoordinatorShell, workers: [WorkerShell], hub: InMemoryHub, seed: UInt64
    ) {
        var generator = SplitMix64(seed: seed)
        while coordinator.outcome == .running && hub.pendingCount > 0 {
            let node = Int(generator.next() % UInt64(workers.count + 1))
            let budget = 1 + Int(generator.next() % 3)
            for _ in 0..<budget {
                let stepped =
                    node == workers.count
                    ? coordinator.step(timeoutMilliseconds: 0) : workers[node].step(timeoutMilliseconds: 0)
                if !stepped { break }
            }
            if workers.contains(where: { $0.outcome != .running && $0.outcome != .completed }) { return }
        }
    }
}

/// Where a resumed run starts: the checkpoint, and the records and measurements the run folder
/// keeps up to it.
public struct ResumePoint {
    public var snapshot: CheckpointSnapshot
    public var records: [RoundRecord]
    public var sharpness: [SharpnessRecord]
    public var event: String

    public init(snapshot: CheckpointSnapshot, records: [RoundRecord], sharpness: [SharpnessRecord], event: String) {
        self.snapshot = snapshot
        self.records = records
        self.sharpness = sharpness
        self.event = event
    }
}
