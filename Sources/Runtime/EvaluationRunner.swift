import Machines

/// Evaluates x̄ (and the workers' models) off the coordinator's message loop, in round order.
/// Each job's two halves (`AverageModelEvaluation.part`) run at once on two threads, each with
/// evaluators of its own: the result of evaluating in line to the bit, and the last evaluation,
/// when the workers are done and a core is free, in about half the time.
public final class EvaluationRunner: @unchecked Sendable {
    /// Jobs queued or running at most (each holds x̄ and the workers' models).
    public static let maximumPendingJobs = 4
    private let queue: BackgroundQueue<EvaluationJob, EvaluationResult>

    /// - Parameter copies: where a finished job's model copies go back for reuse (the
    ///   coordinator machine's `modelCopies`); nil lets them go.
    public init(_ evaluation: AverageModelEvaluation, returningModelsTo copies: ModelCopies? = nil) {
        let helper = evaluation.replica()
        queue = BackgroundQueue(name: "evaluation", maximumPendingJobs: Self.maximumPendingJobs) {
            { [evaluation] job in
                let second = ConcurrentPart(job, name: "evaluation (second half)") { helper.part(1, of: $0) }
                let first = evaluation.part(0, of: job)
                let result = evaluation.combine([first, second.value()], of: job)
                copies?.recycle([job.average] + job.workers)
                return [result]
            }
        }
    }

    public func submit(_ job: EvaluationJob) { queue.submit(job) }
    /// Jobs queued or running, and results not yet drained.
    public var outstanding: Int { queue.outstanding }
    /// Results finished since the last call, in round order.
    public func drain() -> [EvaluationResult] { queue.drain() }
    /// Finishes the queued jobs (or drops them when `cancel`), then stops the thread.
    public func close(cancel: Bool = false) { queue.close(cancel: cancel) }
}
