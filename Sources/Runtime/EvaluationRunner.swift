import Machines

/// Evaluates x̄ (and the workers' models) off the coordinator's message loop, in round order.
public final class EvaluationRunner: @unchecked Sendable {
    /// Jobs queued or running at most (each holds x̄ and the workers' models).
    public static let maximumPendingJobs = 4
    private let queue: BackgroundQueue<EvaluationJob, EvaluationResult>

    public init(_ evaluation: AverageModelEvaluation) {
        queue = BackgroundQueue(name: "evaluation", maximumPendingJobs: Self.maximumPendingJobs) {
            { [evaluation] job in [evaluation.run(job)] }
        }
    }

    public func submit(_ job: EvaluationJob) { queue.submit(job) }
    /// Results finished since the last call, in round order.
    public func drain() -> [EvaluationResult] { queue.drain() }
    /// Finishes the queued jobs (or drops them when `cancel`), then stops the thread.
    public func close(cancel: Bool = false) { queue.close(cancel: cancel) }
}
