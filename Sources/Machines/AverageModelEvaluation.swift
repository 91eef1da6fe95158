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
/// scratch memory). A job also splits into two parts of about equal rows (`part`), which a
/// `replica` can compute at the same time; `combine` adds them up in the order `run` does.
public final class AverageModelEvaluation: @unchecked Sendable {
    let test: Evaluator
    let train: Evaluator?
    let workers: Evaluator

    init(test: Evaluator, train: Evaluator?, workers: Evaluator) {
        self.test = test
        self.train = train
        self.workers = workers
    }

    /// The same evaluations with scratch memory of their own (for another thread).
    public func replica() -> AverageModelEvaluation {
        AverageModelEvaluation(test: test.replica(), train: train?.replica(), workers: workers.replica())
    }

    public func run(_ job: EvaluationJob) -> EvaluationResult {
        let result = job.average.withUnsafeBufferPointer { test.evaluate($0) }
        let trainResult = train.map { evaluator in job.average.withUnsafeBufferPointer { evaluator.evaluate($0) } }
        let accuracies = job.workers.map { model in model.withUnsafeBufferPointer { workers.evaluate($0).accuracy } }
        return EvaluationResult(
            round: job.round, testLoss: result.loss, testAccuracy: result.accuracy, trainLoss: trainResult?.loss,
            trainAccuracy: trainResult?.accuracy, workerAccuracies: accuracies)
    }

    /// One chunk of one model's evaluation: x̄ on the test set (model −2), x̄ on the training
    /// subset (−1), or worker model `model` on the workers' test subset.
    struct Unit: Hashable {
        var model: Int
        var chunk: Int
    }

    /// Every chunk of the job, in `run`'s order, with its rows.
    private func units(of job: EvaluationJob) -> [(unit: Unit, rows: Int)] {
        func chunks(_ evaluator: Evaluator, model: Int) -> [(unit: Unit, rows: Int)] {
            (0..<evaluator.chunkCount).map { (Unit(model: model, chunk: $0), evaluator.rows(ofChunk: $0).count) }
        }
        return chunks(test, model: -2) + (train.map { chunks($0, model: -1) } ?? [])
            + job.workers.indices.flatMap { chunks(workers, model: $0) }
    }

    /// Part 0 or 1 of the job: its chunks in `run`'s order cut where half the rows are done, so the
    /// two take about equally long.
    public func part(_ index: Int, of job: EvaluationJob) -> PartialEvaluation {
        precondition(index == 0 || index == 1, "a job has parts 0 and 1")
        let all = units(of: job)
        let half = all.reduce(0) { $0 + $1.rows } / 2
        var done = 0
        var cut = all.count
        for (position, unit) in all.enumerated() {
            if done >= half {
                cut = position
                break
            }
            done += unit.rows
        }
        var sums: [Unit: Evaluator.ChunkSums] = [:]
        for (unit, _) in index == 0 ? all[..<cut] : all[cut...] {
            let (evaluator, model) =
                unit.model == -2
                ? (test, job.average) : unit.model == -1 ? (train!, job.average) : (workers, job.workers[unit.model])
            sums[unit] = model.withUnsafeBufferPointer { evaluator.chunkSums($0, chunk: unit.chunk) }
        }
        return PartialEvaluation(sums: sums)
    }

    /// `run(job)`'s result from its two parts, to the bit: every model's chunks added in order.
    public func combine(_ parts: [PartialEvaluation], of job: EvaluationJob) -> EvaluationResult {
        var sums: [Unit: Evaluator.ChunkSums] = [:]
        for part in parts { sums.merge(part.sums) { _, _ in preconditionFailure("a chunk in both parts") } }
        func result(_ evaluator: Evaluator, model: Int) -> (loss: Double, accuracy: Double) {
            evaluator.result(of: (0..<evaluator.chunkCount).map { sums[Unit(model: model, chunk: $0)]! })
        }
        let testResult = result(test, model: -2)
        let trainResult = train.map { result($0, model: -1) }
        let accuracies = job.workers.indices.map { result(workers, model: $0).accuracy }
        return EvaluationResult(
            round: job.round, testLoss: testResult.loss, testAccuracy: testResult.accuracy,
            trainLoss: trainResult?.loss, trainAccuracy: trainResult?.accuracy, workerAccuracies: accuracies)
    }
}

/// The chunk sums one part of an evaluation job computed.
public struct PartialEvaluation: Sendable {
    var sums: [AverageModelEvaluation.Unit: Evaluator.ChunkSums]
}
