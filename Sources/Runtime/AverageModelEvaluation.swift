import Algorithms
import Datasets
import Foundation
import LearningCore
import Synchronization

/// x̄ and the gathered workers' models of a round, to be evaluated off the coordinator's message
/// loop (copies: models read from shared memory are only valid until their senders reuse slots).
public struct EvaluationJob: Sendable {
    public var round: Int
    public var average: [Float]
    /// The workers' models (empty when the workers are not evaluated).
    public var workers: [[Float]]
}

/// What a round's evaluation found, filled into its record.
public struct EvaluationResult: Sendable, Equatable {
    public var round: Int
    public var testLoss: Double
    public var testAccuracy: Double
    public var trainLoss: Double?
    public var trainAccuracy: Double?
    public var workerAccuracies: [Double]

    /// Fills the evaluation's figures into `record`.
    func fill(_ record: inout RoundRecord) {
        record.testLoss = testLoss
        record.testAccuracy = testAccuracy
        record.trainLossAverageModel = trainLoss
        record.trainAccuracyAverageModel = trainAccuracy
        if !workerAccuracies.isEmpty {
            record.workerTestAccuracyMean = workerAccuracies.reduce(0, +) / Double(workerAccuracies.count)
            record.workerTestAccuracyMin = workerAccuracies.min()
            record.workerTestAccuracyMax = workerAccuracies.max()
        }
    }
}

/// The evaluations of x̄ (the whole test set and the fixed training subset) and of the workers'
/// models (a fixed seeded test subset). Pure compute; one job at a time (the evaluators own their
/// scratch memory).
public final class AverageModelEvaluation: @unchecked Sendable {
    let test: Evaluator
    let train: Evaluator?
    let workers: Evaluator

    init(test: Evaluator, train: Evaluator?, workers: Evaluator) {
        self.test = test
        self.train = train
        self.workers = workers
    }

    public func run(_ job: EvaluationJob) -> EvaluationResult {
        let result = job.average.withUnsafeBufferPointer { test.evaluate($0) }
        let trainResult = train.map { evaluator in job.average.withUnsafeBufferPointer { evaluator.evaluate($0) } }
        let accuracies = job.workers.map { model in model.withUnsafeBufferPointer { workers.evaluate($0).accuracy } }
        return EvaluationResult(
            round: job.round, testLoss: result.loss, testAccuracy: result.accuracy, trainLoss: trainResult?.loss,
            trainAccuracy: trainResult?.accuracy, workerAccuracies: accuracies)
    }
}

/// Runs evaluations on a thread of its own, in order, so the coordinator keeps receiving and
/// recording rounds while x̄ is evaluated; results are collected with `drain()`.
public final class EvaluationRunner: @unchecked Sendable {
    private struct State {
        var queue: [EvaluationJob] = []
        var finished: [EvaluationResult] = []
        var running = false
        var closed = false
    }

    private let state = Mutex(State())
    private let signal = DispatchSemaphore(value: 0)
    private let done = DispatchSemaphore(value: 0)
    private let evaluation: AverageModelEvaluation

    public init(_ evaluation: AverageModelEvaluation) {
        self.evaluation = evaluation
        let thread = Thread { [self] in self.loop() }
        thread.name = "evaluation"
        thread.start()
    }

    /// Jobs queued or running at most (each holds x̄ and the workers' models): `submit` waits for
    /// a free place beyond that, so evaluations slower than the rounds slow the run instead of
    /// growing memory without bound.
    public static let maximumPendingJobs = 4
    private let places = DispatchSemaphore(value: EvaluationRunner.maximumPendingJobs)

    public func submit(_ job: EvaluationJob) {
        places.wait()
        state.withLock { $0.queue.append(job) }
        signal.signal()
    }

    /// Results finished since the last call, in round order.
    public func drain() -> [EvaluationResult] {
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
        while true {
            signal.wait()
            while let job = state.withLock({ state -> EvaluationJob? in
                guard !state.queue.isEmpty else { return nil }
                state.running = true
                return state.queue.removeFirst()
            }) {
                let result = evaluation.run(job)
                state.withLock {
                    $0.finished.append(result)
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
