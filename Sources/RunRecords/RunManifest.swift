import Datasets
import Diagnostics
import Foundation
import Topologies
import Transport

/// `summary.json`.
public struct RunSummary: Codable, Sendable {
    public var status: String
    public var reason: String?
    public var runName: String
    public var runID: String
    /// Rounds recorded (equal to `roundsPlanned` when completed).
    public var rounds: Int
    public var roundsPlanned: Int
    public var workers: Int
    public var topology: String
    public var algorithm: String
    public var data: DataDescription?
    public var finalTestAccuracy: Double?
    public var finalTestLoss: Double?
    public var finalTrainLoss: Double?
    public var finalConsensusDistanceSquared: Double?
    public var wallSeconds: Double
    public var roundsPerSecond: Double
    public var bytesSent: Int?
    public var workerPeakResidentBytes: [Int]?
    /// Of each worker's peak, the shared-memory pages it had mapped at the end (segments are
    /// counted by every process that reads them); nil without shared memory.
    public var workerSharedResidentBytes: [Int]? = nil
    /// Of those pages, each worker's proportional share (a page mapped by k processes counts
    /// 1/k: Linux's Pss_Shmem) at the end. Own memory (peak − shared) plus this is what the
    /// worker costs the host: summed over the processes, every segment page is counted once.
    public var workerSharedProportionalBytes: [Int]? = nil
    /// Spectral gap of W (of the product over one period for schedules).
    public var spectralGap: Double?
    /// Failures and faults during the run, with the round they happened at.
    public var events: [String]?
    /// Per-client evaluation (each worker's own model on its own test split): the unweighted mean
    /// and the worst client at the last evaluation, and the best mean with its round.
    public var clientAccuracyMeanLast: Double?
    public var clientAccuracyWorstLast: Double?
    public var clientAccuracyMeanBest: Double?
    public var clientAccuracyBestRound: Int?
    /// The same clients' models on their validation splits at the last evaluation (mean, worst).
    public var clientValidationAccuracyMeanLast: Double? = nil
    public var clientValidationAccuracyWorstLast: Double? = nil
    /// Seconds from the coordinator's start to the start barrier (processes only).
    public var startupSeconds: Double? = nil
    /// How payloads travelled between the processes, and why (processes only).
    public var payloads: PayloadDecision? = nil

    public init(
        status: String, reason: String? = nil, runName: String, runID: String, rounds: Int, roundsPlanned: Int,
        workers: Int, topology: String, algorithm: String, data: DataDescription? = nil,
        finalTestAccuracy: Double? = nil, finalTestLoss: Double? = nil, finalTrainLoss: Double? = nil,
        finalConsensusDistanceSquared: Double? = nil, wallSeconds: Double, roundsPerSecond: Double,
        bytesSent: Int? = nil, workerPeakResidentBytes: [Int]? = nil, workerSharedResidentBytes: [Int]? = nil,
        spectralGap: Double? = nil, events: [String]? = nil, clientAccuracyMeanLast: Double? = nil,
        clientAccuracyWorstLast: Double? = nil, clientAccuracyMeanBest: Double? = nil,
        clientAccuracyBestRound: Int? = nil, startupSeconds: Double? = nil, payloads: PayloadDecision? = nil
    ) {
        self.status = status
        self.reason = reason
        self.runName = runName
        self.runID = runID
        self.rounds = rounds
        self.roundsPlanned = roundsPlanned
        self.workers = workers
        self.topology = topology
        self.algorithm = algorithm
        self.data = data
        self.finalTestAccuracy = finalTestAccuracy
        self.finalTestLoss = finalTestLoss
        self.finalTrainLoss = finalTrainLoss
        self.finalConsensusDistanceSquared = finalConsensusDistanceSquared
        self.wallSeconds = wallSeconds
        self.roundsPerSecond = roundsPerSecond
        self.bytesSent = bytesSent
        self.workerPeakResidentBytes = workerPeakResidentBytes
        self.workerSharedResidentBytes = workerSharedResidentBytes
        self.spectralGap = spectralGap
        self.events = events
        self.clientAccuracyMeanLast = clientAccuracyMeanLast
        self.clientAccuracyWorstLast = clientAccuracyWorstLast
        self.clientAccuracyMeanBest = clientAccuracyMeanBest
        self.clientAccuracyBestRound = clientAccuracyBestRound
        self.startupSeconds = startupSeconds
        self.payloads = payloads
    }

    enum CodingKeys: String, CodingKey {
        case status, reason, rounds, workers, topology, algorithm, data
        case runName = "run_name"
        case runID = "run_id"
        case roundsPlanned = "rounds_planned"
        case finalTestAccuracy = "final_test_accuracy"
        case finalTestLoss = "final_test_loss"
        case finalTrainLoss = "final_train_loss"
        case finalConsensusDistanceSquared = "final_consensus_distance_sq"
        case wallSeconds = "wall_seconds"
        case roundsPerSecond = "rounds_per_second"
        case bytesSent = "bytes_sent"
        case workerPeakResidentBytes = "worker_peak_resident_bytes"
        case workerSharedResidentBytes = "worker_shared_resident_bytes"
        case workerSharedProportionalBytes = "worker_shared_proportional_bytes"
        case spectralGap = "spectral_gap"
        case events
        case clientAccuracyMeanLast = "client_accuracy_mean_last"
        case clientAccuracyWorstLast = "client_accuracy_worst_last"
        case clientAccuracyMeanBest = "client_accuracy_mean_best"
        case clientAccuracyBestRound = "client_accuracy_best_round"
        case clientValidationAccuracyMeanLast = "client_validation_accuracy_mean_last"
        case clientValidationAccuracyWorstLast = "client_validation_accuracy_worst_last"
        case startupSeconds = "startup_seconds"
        case payloads
    }
}

/// `config.json`: the configuration plus what is needed to reproduce and identify the run.
public struct RunManifest: Codable, Sendable {
    public var configuration: RunConfiguration
    public var topologyHash: String
    public var topologyEdges: String
    public var data: DataDescription
    public var gitCommit: String
    public var createdAt: String
    public var command: [String]
    public var openBLASCore: String
    /// Spectra of the mixing (per phase and over one period).
    public var topologySpectrum: ScheduleSpectrum?
    /// How payloads travelled between the processes, and why (processes only; set once every
    /// worker registered).
    public var payloads: PayloadDecision?

    public init(
        configuration: RunConfiguration, data: DataDescription, gitCommit: String, createdAt: String,
        command: [String], openBLASCore: String, topologySpectrum: ScheduleSpectrum? = nil
    ) {
        self.topologySpectrum = topologySpectrum
        self.configuration = configuration
        topologyHash = configuration.topology.hash
        if configuration.topology.period == nil {
            topologyEdges = "# \(configuration.topology.name): a new random graph every round, seeded by the run seed\n"
        } else {
            topologyEdges = TopologyFile.format(configuration.topology)
        }
        self.data = data
        self.gitCommit = gitCommit
        self.createdAt = createdAt
        self.command = command
        self.openBLASCore = openBLASCore
    }

    enum CodingKeys: String, CodingKey {
        case configuration, data, command
        case topologyHash = "topology_hash"
        case topologyEdges = "topology_edges"
        case gitCommit = "git_commit"
        case createdAt = "created_at"
        case openBLASCore = "openblas_core"
        case topologySpectrum = "topology_spectrum"
        case payloads
    }
}
