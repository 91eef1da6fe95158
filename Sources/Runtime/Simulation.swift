import Datasets
import Transport

/// All workers and the coordinator in one process over `InMemoryTransport`, driven round-robin
/// on one thread: the same state machines as the multi-process run, so the same seed gives the
/// same numbers, bit for bit.
public enum Simulation {
    public static func run(
        configuration: RunConfiguration, runID: UInt64, testSet: Dataset?, report: RunReport?, data: DataDescription?,
        progress: ProgressLine?, log: @escaping (String) -> Void,
        loadShard: ((Int, RunConfiguration) throws -> Dataset)? = nil
    ) -> (coordinator: CoordinatorShell, workers: [WorkerShell]) {
        let hub = InMemoryHub()
        let coordinator = CoordinatorShell(
            machine: CoordinatorMachine(configuration: configuration, runID: runID, testSet: testSet),
            transport: hub.makeTransport(name: "coordinator"), report: report, data: data, progress: progress, log: log)
        let workers = (0..<configuration.workers).map { index in
            let machine = WorkerMachine(
                nonce: UInt64(index), host: "simulation", processID: 0, requestedRank: index,
                peakResidentBytes: ProcessResources.peakResidentBytes)
            let transport = hub.makeTransport(name: "worker-\(index)")
            if let loadShard {
                return WorkerShell(machine: machine, transport: transport, log: log, loadShard: loadShard)
            }
            return WorkerShell(machine: machine, transport: transport, log: log)
        }
        for worker in workers { worker.start(coordinatorEndpoint: coordinator.transport.localEndpoint) }
        while coordinator.outcome == .running {
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
            if !progressed && coordinator.outcome == .running {
                coordinator.fail(
                    "simulation stalled: no messages in flight while waiting for \(coordinator.machine.waitingOn)")
            }
        }
        // Deliver the coordinator's final acknowledgements, so the workers finish too.
        for worker in workers { while worker.step(timeoutMilliseconds: 0) {} }
        return (coordinator, workers)
    }
}
