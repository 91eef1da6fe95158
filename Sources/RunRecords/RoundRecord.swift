/// One row of `rounds.jsonl` / `rounds.csv`: the state after a round's gossip step.
public struct RoundRecord: Codable, Sendable, Equatable {
    /// 1-based round number.
    public var round: Int
    /// Mean over workers of each worker's mean mini-batch loss during the round's local steps.
    public var trainLoss: Double
    public var trainLossMin: Double
    public var trainLossMax: Double
    /// Learning rate of the round's first local step (the mean over the workers that trained).
    public var learningRate: Double
    /// Ξ² = (1/n)·Σᵢ‖xᵢ − x̄‖², on rounds where parameters were gathered.
    public var consensusDistanceSquared: Double?
    /// Ξ² restricted to each named parameter slice.
    public var consensusDistanceSquaredByLayer: [String: Double]?
    /// ‖x̄‖ (Float64 accumulation), on rounds where parameters were gathered.
    public var averageModelNorm: Double?
    /// x̄ on the test set, on evaluation rounds.
    public var testLoss: Double?
    public var testAccuracy: Double?
    /// x̄ on the fixed training subset (the sharpness evaluation set), on evaluation rounds.
    public var trainLossAverageModel: Double?
    public var trainAccuracyAverageModel: Double?
    /// ‖x̄_t − x₀‖ overall and per named slice, on gathering rounds.
    public var distanceFromInit: Double?
    public var distanceFromInitByLayer: [String: Double]?
    /// Each worker's own model on the test set, on evaluation rounds (when enabled).
    public var workerTestAccuracyMean: Double?
    public var workerTestAccuracyMin: Double?
    public var workerTestAccuracyMax: Double?
    /// Total bytes all workers had sent by the end of this round.
    public var bytesSent: Int
    /// Mean local epoch reached by the workers.
    public var epoch: Double
    /// Seconds since the start barrier when the coordinator recorded the round (set by the shell).
    public var elapsedSeconds: Double?
    /// For periodic schedules, the phase (round − 1) mod period the round used.
    public var topologyPhase: Int?
    /// Bytes each worker sent during this round for the algorithm (gossip, federated uploads; the
    /// reports that exist only for the measurements are not counted), by rank, live workers.
    public var bytesSentByWorker: [Int]?
    /// Workers still in the run, when failures removed some (`--on-failure continue`).
    public var workersAlive: Int?
    /// Each worker's own model on its own test split (by rank), and summaries of them.
    public var clientAccuracy: [Double]?
    public var clientAccuracyMean: Double?
    public var clientAccuracyWeightedMean: Double?
    public var clientAccuracyStandardDeviation: Double?
    public var clientAccuracyWorst: Double?
    /// Mean accuracy of the worst 10 % of clients (at least one).
    public var clientAccuracyWorstTenth: Double?
    /// The same models on each client's validation split (`clientValidationFraction`; by rank), their
    /// mean and the worst: what hyperparameters are chosen on, never the test split.
    public var clientValidationAccuracy: [Double]?
    public var clientValidationAccuracyMean: Double?
    public var clientValidationAccuracyWorst: Double?
    /// The additive model's curriculum values λ_t and μ_t that this round's loss used.
    public var additiveLambda: Double?
    public var additiveMu: Double?
    /// The mean over reporting clients of the fraction of the shared part that is exactly zero.
    public var additiveGlobalZeroFraction: Double?

    /// A record with the fields every round has; the rest start nil.
    public init(
        round: Int, trainLoss: Double, trainLossMin: Double, trainLossMax: Double, learningRate: Double,
        bytesSent: Int, epoch: Double
    ) {
        self.round = round
        self.trainLoss = trainLoss
        self.trainLossMin = trainLossMin
        self.trainLossMax = trainLossMax
        self.learningRate = learningRate
        self.bytesSent = bytesSent
        self.epoch = epoch
    }

    public enum CodingKeys: String, CodingKey, CaseIterable {
        case round
        case trainLoss = "train_loss"
        case trainLossMin = "train_loss_min"
        case trainLossMax = "train_loss_max"
        case learningRate = "learning_rate"
        case consensusDistanceSquared = "consensus_distance_sq"
        case consensusDistanceSquaredByLayer = "consensus_distance_sq_by_layer"
        case averageModelNorm = "average_model_norm"
        case testLoss = "test_loss"
        case testAccuracy = "test_accuracy"
        case trainLossAverageModel = "train_loss_average_model"
        case trainAccuracyAverageModel = "train_accuracy_average_model"
        case distanceFromInit = "distance_from_init"
        case distanceFromInitByLayer = "distance_from_init_by_layer"
        case workerTestAccuracyMean = "worker_test_accuracy_mean"
        case workerTestAccuracyMin = "worker_test_accuracy_min"
        case workerTestAccuracyMax = "worker_test_accuracy_max"
        case bytesSent = "bytes_sent"
        case epoch
        case elapsedSeconds = "elapsed_seconds"
        case topologyPhase = "topology_phase"
        case bytesSentByWorker = "bytes_sent_by_worker"
        case workersAlive = "workers_alive"
        case clientAccuracy = "client_accuracy"
        case clientAccuracyMean = "client_accuracy_mean"
        case clientAccuracyWeightedMean = "client_accuracy_weighted_mean"
        case clientAccuracyStandardDeviation = "client_accuracy_std"
        case clientAccuracyWorst = "client_accuracy_worst"
        case clientAccuracyWorstTenth = "client_accuracy_worst_10pct"
        case clientValidationAccuracy = "client_validation_accuracy"
        case clientValidationAccuracyMean = "client_validation_accuracy_mean"
        case clientValidationAccuracyWorst = "client_validation_accuracy_worst"
        case additiveLambda = "additive_lambda"
        case additiveMu = "additive_mu"
        case additiveGlobalZeroFraction = "additive_global_zero_fraction"
    }

    /// Column order of `rounds.csv` (the per-layer map is JSONL only).
    public static let csvColumns: [CodingKeys] = [
        .round, .trainLoss, .trainLossMin, .trainLossMax, .learningRate, .consensusDistanceSquared, .averageModelNorm,
        .testLoss, .testAccuracy, .trainLossAverageModel, .trainAccuracyAverageModel, .distanceFromInit,
        .workerTestAccuracyMean, .workerTestAccuracyMin, .workerTestAccuracyMax, .bytesSent,
        .epoch, .elapsedSeconds, .topologyPhase,
    ]

    public var csvRow: String {
        func number(_ value: Double?) -> String { value.map { "\($0)" } ?? "" }
        return [
            "\(round)", number(trainLoss), number(trainLossMin), number(trainLossMax), number(learningRate),
            number(consensusDistanceSquared), number(averageModelNorm), number(testLoss), number(testAccuracy),
            number(trainLossAverageModel), number(trainAccuracyAverageModel), number(distanceFromInit),
            number(workerTestAccuracyMean), number(workerTestAccuracyMin), number(workerTestAccuracyMax),
            "\(bytesSent)",
            number(epoch), number(elapsedSeconds), topologyPhase.map(String.init) ?? "",
        ].joined(separator: ",")
    }

    public static var csvHeader: String { csvColumns.map(\.rawValue).joined(separator: ",") }
}

extension RoundRecord {
    /// Fills the per-client figures from each live worker's evaluation of its own model on its own
    /// test split (in rank order): accuracy per client, the unweighted mean and the mean weighted
    /// by each client's training examples (its share of the data, as FedAvg weighs clients),
    /// standard deviation, the worst client and the mean of the worst 10 % (at least one client).
    public mutating func setClientFigures(_ evaluations: [ClientEvaluation]) {
        guard !evaluations.isEmpty else { return }
        let accuracies = evaluations.map(\.accuracy)
        let mean = accuracies.reduce(0, +) / Double(accuracies.count)
        clientAccuracy = accuracies
        clientAccuracyMean = mean
        let examples = evaluations.reduce(0) { $0 + $1.trainingExamples }
        clientAccuracyWeightedMean =
            examples > 0
            ? evaluations.reduce(0) { $0 + $1.accuracy * Double($1.trainingExamples) } / Double(examples) : mean
        clientAccuracyStandardDeviation =
            (accuracies.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(accuracies.count)).squareRoot()
        let sorted = accuracies.sorted()
        clientAccuracyWorst = sorted.first
        let tenth = max(1, sorted.count / 10)
        clientAccuracyWorstTenth = sorted.prefix(tenth).reduce(0, +) / Double(tenth)
        let validation = evaluations.compactMap(\.validationAccuracy)
        if validation.count == evaluations.count {
            clientValidationAccuracy = validation
            clientValidationAccuracyMean = validation.reduce(0, +) / Double(validation.count)
            clientValidationAccuracyWorst = validation.min()
        }
    }
}

/// worker → coordinator after an evaluation round: how the worker's own (personalized) model does
/// on the worker's own test split.
public struct ClientEvaluation: Codable, Sendable, Equatable {
    /// 1-based round after which the model was evaluated.
    public var round: Int
    public var accuracy: Double
    public var loss: Double
    /// Test examples in the client's split.
    public var examples: Int
    /// Training examples of the client (its share of the data: the weight of its accuracy in the
    /// sample-weighted mean).
    public var trainingExamples: Int
    /// The same model on the client's validation split (`clientValidationFraction`), when it has one.
    public var validationAccuracy: Double? = nil
    public var validationLoss: Double? = nil
    public var validationExamples: Int? = nil

    public init(round: Int, accuracy: Double, loss: Double, examples: Int, trainingExamples: Int) {
        self.round = round
        self.accuracy = accuracy
        self.loss = loss
        self.examples = examples
        self.trainingExamples = trainingExamples
    }
}
