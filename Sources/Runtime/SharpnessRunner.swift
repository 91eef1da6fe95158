import Datasets
import Diagnostics
import Foundation
import LearningCore
import Machines
import Optimizers

/// Measures curvature and sharpness on a thread of its own (a `BackgroundQueue`), so the
/// coordinator keeps receiving and recording rounds (and the workers keep training) while it
/// works. Jobs run in order; finished records are collected with `drain()`. Each model's two
/// halves (`SharpnessProbe.measureCurvature`, `measureLayersAndSharpness`) run at once on two
/// threads, each with a loss surface of its own: the same records, and a measurement with a core
/// free (the last one, after the workers have finished) takes about half the time.
public final class SharpnessRunner: @unchecked Sendable {
    /// Jobs queued or running at most (each holds x̄ and every gathered model).
    public static let maximumPendingJobs = 4
    private let queue: BackgroundQueue<SharpnessJob, SharpnessRecord>

    /// - Parameter trainingGroupSize: with batch norm and the training loss, the rows normalised
    ///   together (the ghost or per-worker batch size): the loss is evaluated in chunks of that size.
    /// - Parameter optimizer: the optimizer whose stability threshold each record states (nil:
    ///   plain SGD's 2/η).
    /// - Parameter copies: where a finished job's model copies go back for reuse (the coordinator
    ///   machine's `modelCopies`); nil lets them go.
    public init(
        network: Network, evaluationSet: Dataset, settings: SharpnessSettings, seed: UInt64,
        trainingGroupSize: Int = 256, optimizer: OptimizerSettings? = nil, returningModelsTo copies: ModelCopies? = nil
    ) {
        let training = !network.stateRanges.isEmpty && settings.batchNormLoss == .training
        let normalization: NormalizationMode = training ? .batchStatistics(ghostBatchSize: nil) : .runningStatistics
        let chunkSize = training ? trainingGroupSize : 256
        queue = BackgroundQueue(name: "sharpness", maximumPendingJobs: Self.maximumPendingJobs) {
            let surfaces = (0..<2).map { _ in
                NetworkLoss(
                    network: network, dataset: evaluationSet, chunkSize: chunkSize, normalization: normalization)
            }
            let statistics: String? =
                network.stateRanges.isEmpty
                ? nil : normalization == .runningStatistics ? "running" : "batch (groups of \(chunkSize))"
            return { job in
                let records = Self.measure(
                    job, surfaces: (surfaces[0], surfaces[1]), statistics: statistics, settings: settings, seed: seed,
                    optimizer: optimizer)
                copies?.recycle([job.average] + job.workers)
                return records
            }
        }
    }

    public func submit(_ job: SharpnessJob) { queue.submit(job) }
    /// Jobs queued or running.
    public var pending: Int { queue.pending }
    /// Jobs queued or running, and records not yet drained.
    public var outstanding: Int { queue.outstanding }
    /// Blocks until every submitted measurement is done (their records wait in `drain`).
    public func waitUntilIdle() {
        while queue.pending > 0 { usleep(2_000) }
    }
    /// Records finished since the last call, in round order.
    public func drain() -> [SharpnessRecord] { queue.drain() }
    /// Finishes the queued jobs (or drops them when `cancel`), then stops the thread.
    public func close(cancel: Bool = false) { queue.close(cancel: cancel) }

    /// x̄'s record and the asked-for workers' records of one job.
    private static func measure(
        _ job: SharpnessJob, surfaces: (NetworkLoss, NetworkLoss), statistics: String?, settings: SharpnessSettings,
        seed: UInt64, optimizer: OptimizerSettings?
    ) -> [SharpnessRecord] {
        let threshold = optimizer?.stabilityThreshold(learningRate: job.learningRate)
        let models =
            [("average", job.average, job.workers as [[Float]]?)]
            + job.models(ofRanks: settings.workers).map { ("worker \($0.0)", $0.1, nil as [[Float]]?) }
        return models.map { model, parameters, workers in
            let started = Date()
            let measureSeed = seed &+ UInt64(job.round)
            let other = ConcurrentPart(Unchecked(surfaces.1), name: "sharpness (second half)") { surface in
                SharpnessProbe.measureLayersAndSharpness(
                    surface.value, at: parameters, settings: settings, workers: workers, seed: measureSeed)
            }
            let curvature = SharpnessProbe.measureCurvature(
                surfaces.0, at: parameters, settings: settings, seed: measureSeed)
            var record = SharpnessProbe.record(
                curvature: curvature, layersAndSharpness: other.value(), model: model, round: job.round,
                learningRate: job.learningRate, stabilityThreshold: threshold)
            record.seconds = Date().timeIntervalSince(started)
            record.batchNormStatistics = statistics
            return record
        }
    }
}
