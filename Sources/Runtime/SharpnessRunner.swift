import Datasets
import Diagnostics
import Foundation
import LearningCore
import Optimizers
import Synchronization

/// Measures curvature and sharpness on a thread of its own, so the coordinator keeps receiving
/// and recording rounds (and the workers keep training) while it works. Jobs run in order;
/// finished records are collected with `drain()`.
public final class SharpnessRunner: @unchecked Sendable {
    private struct State {
        var queue: [SharpnessJob] = []
        var finished: [SharpnessRecord] = []
        var running = false
        var closed = false
    }

    private let state = Mutex(State())
    private let signal = DispatchSemaphore(value: 0)
    private let done = DispatchSemaphore(value: 0)
    private let network: Network
    private let subset: Dataset
    private let settings: SharpnessSettings
    private let seed: UInt64

    private let normalization: NormalizationMode
    private let chunkSize: Int

    /// - Parameter trainingGroupSize: with batch norm and the training loss, the rows normalised
    ///   together (the ghost or per-worker batch size): the loss is evaluated in chunks of that size.
    /// The optimizer whose stability threshold each record states (nil: plain SGD's 2/η).
    private let optimizer: OptimizerSettings?

    public init(
        network: Network, evaluationSet: Dataset, settings: SharpnessSettings, seed: UInt64,
        trainingGroupSize: Int = 256, optimizer: OptimizerSettings? = nil
    ) {
        self.optimizer = optimizer
        let training = !network.stateRanges.isEmpty && settings.batchNormLoss == .training
        normalization = training ? .batchStatistics(ghostBatchSize: nil) : .runningStatistics
        chunkSize = training ? trainingGroupSize : 256
        self.network = network
        subset = evaluationSet
        self.settings = settings
        self.seed = seed
        let thread = Thread { [self] in self.loop() }
        thread.name = "sharpness"
        thread.start()
    }

    /// Jobs queued or running at most (each holds x̄ and every gathered model): `submit` waits
    /// for a free place beyond that, so measurements slower than the rounds slow the run (flow
    /// control then holds the workers) instead of growing memory without bound.
    public static let maximumPendingJobs = 4
    private let places = DispatchSemaphore(value: SharpnessRunner.maximumPendingJobs)

    public func submit(_ job: SharpnessJob) {
        places.wait()
        state.withLock { $0.queue.append(job) }
        signal.signal()
    }

    /// Jobs queued or running.
    public var pending: Int { state.withLock { $0.queue.count + ($0.running ? 1 : 0) } }

    /// Records finished since the last call, in round order.
    public func drain() -> [SharpnessRecord] {
        state.withLock { state in
            defer { state.finished = [] }
            return state.finished
        }
    }

    /// Finishes the queued jobs (or drops them when `cancel`), then stops the thread.
    public func close(cancel: Bool = false) {
        let dropped = state.withLock { state -> Int in
            state.closed = true
            guard cancel else { return 0 }
            defer { state.queue = [] }
            return state.queue.count
        }
        for _ in 0..<dropped { places.signal() }
        signal.signal()
        done.wait()
    }

    private func loop() {
        let surface = NetworkLoss(
            network: network, dataset: subset, chunkSize: chunkSize, normalization: normalization)
        let statistics: String? =
            network.stateRanges.isEmpty
            ? nil : normalization == .runningStatistics ? "running" : "batch (groups of \(chunkSize))"
        while true {
            signal.wait()
            while let job = state.withLock({ state -> SharpnessJob? in
                guard !state.queue.isEmpty else { return nil }
                state.running = true
                return state.queue.removeFirst()
            }) {
                var records: [SharpnessRecord] = []
                let started = Date()
                let threshold = optimizer?.stabilityThreshold(learningRate: job.learningRate)
                var record = SharpnessProbe.measure(
                    surface, at: job.average, model: "average", round: job.round, learningRate: job.learningRate,
                    settings: settings, workers: job.workers, seed: seed &+ UInt64(job.round),
                    stabilityThreshold: threshold)
                record.seconds = Date().timeIntervalSince(started)
                record.batchNormStatistics = statistics
                records.append(record)
                for (rank, model) in job.models(ofRanks: settings.workers) {
                    let workerStarted = Date()
                    var workerRecord = SharpnessProbe.measure(
                        surface, at: model, model: "worker \(rank)", round: job.round,
                        learningRate: job.learningRate, settings: settings, seed: seed &+ UInt64(job.round),
                        stabilityThreshold: threshold)
                    workerRecord.seconds = Date().timeIntervalSince(workerStarted)
                    workerRecord.batchNormStatistics = statistics
                    records.append(workerRecord)
                }
                state.withLock {
                    $0.finished += records
                    $0.running = false
                }
                places.signal()
            }
            if state.withLock({ $0.closed && $0.queue.isEmpty }) {
                done.signal()
                return
            }
        }
    }
}
