import Algorithms
import Datasets
import LearningCore
import RunRecords

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
