import Algorithms
import Datasets
import Diagnostics
import LearningCore
import Optimizers
import Topologies

/// Where training and test data come from.
public enum DataSource: Sendable, Equatable, Codable, CustomStringConvertible {
    /// IDX files (gzipped or raw) in `directory`: train-images-idx3-ubyte, train-labels-idx1-ubyte,
    /// t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (MNIST and Fashion-MNIST names).
    case idx(directory: String)
    /// The built-in synthetic set.
    case synthetic(seed: UInt64, trainCount: Int, testCount: Int, featureCount: Int)

    public var description: String {
        switch self {
        case .idx(let directory): directory
        case .synthetic(let seed, _, _, _): seed == 1 ? "synthetic" : "synthetic:\(seed)"
        }
    }
}

/// When a run writes checkpoints: every `everyRounds` rounds (0: not by count) and, when
/// `everySeconds` is set, also once that much wall time has passed since the last one (the
/// coordinator then asks the workers for the next round they can all still stop at).
public struct CheckpointSettings: Sendable, Equatable, Codable {
    public var everyRounds: Int
    public var everySeconds: Double?

    /// The default: 1,000 rounds or about ten minutes, whichever comes first.
    public init(everyRounds: Int = 1_000, everySeconds: Double? = 600) {
        self.everyRounds = everyRounds
        self.everySeconds = everySeconds
    }
}

/// What the run does when a worker stops responding.
public enum FailurePolicy: String, Sendable, Codable, CaseIterable {
    /// Record every completed round, mark the run failed with the cause, stop everything.
    case abort
    /// Remove the dead worker from the topology, recompute the survivors' mixing weights, go on.
    case `continue`
}

/// Federated learning with the coordinator as the server (star topology): each round it samples
/// a fraction of the clients (seeded), they run the local steps from the global model, and the
/// server averages their models weighted by data size (McMahan et al., AISTATS 2017), optionally
/// with FedProx's proximal term μ (Li et al., MLSys 2020). The rule itself is `aggregator`.
public struct FederatedSettings: Sendable, Equatable, Codable {
    public var clientFraction: Double
    public var proximalMu: Double
    public var clientMomentum: ClientMomentum

    public init(clientFraction: Double, proximalMu: Double, clientMomentum: ClientMomentum = .reset) {
        self.clientFraction = clientFraction
        self.proximalMu = proximalMu
        self.clientMomentum = clientMomentum
    }

    private enum CodingKeys: String, CodingKey { case clientFraction, proximalMu, clientMomentum }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        clientFraction = try c.decode(Double.self, forKey: .clientFraction)
        proximalMu = try c.decode(Double.self, forKey: .proximalMu)
        // Versions before the setting kept each client's momentum from round to round.
        clientMomentum = try c.decodeIfPresent(ClientMomentum.self, forKey: .clientMomentum) ?? .keep
    }

    /// The server's rule: FedProx when μ > 0, FedAvg otherwise.
    public var aggregator: any ServerAggregator {
        proximalMu > 0
            ? FederatedProximal(clientFraction: clientFraction, proximalMu: proximalMu)
            : FederatedAveraging(clientFraction: clientFraction)
    }
}

/// What a federated client's optimizer state (the momentum trace of the shared model's local
/// optimizer) does between the rounds it trains in.
public enum ClientMomentum: String, Sendable, Codable, CaseIterable {
    /// Back to zero at the start of every round's local training: a fresh local optimizer per
    /// round, as FedAvg's description implies (McMahan et al., AISTATS 2017: plain local SGD from
    /// the global model) and as implementations that build the optimizer inside each round's
    /// local training do. The default.
    case reset
    /// Carried over from the client's previous round, however many rounds ago it was sampled, as
    /// implementations that keep one optimizer per client do (dsgd's behaviour before the setting
    /// existed).
    case keep
}

/// The large-batch regime of "Train longer, generalize better" (Hoffer, Hubara and Soudry,
/// NeurIPS 2017): against a reference (small) total batch B_S, a run with total batch
/// B_L = batch × workers scales its learning rate (none, linear as in Goyal et al. 2017, or by
/// √(B_L/B_S) as the paper does) and, with regime adaptation, multiplies its number of rounds and
/// every step count of its schedule (warm-up, step decay, cosine length) by ⌈B_L/B_S⌉ so it makes
/// as many updates as the small-batch run. The configuration holds the adapted values; this
/// records what they were derived from.
public struct LargeBatchSettings: Sendable, Equatable, Codable {
    public enum Scaling: String, Sendable, Codable, CaseIterable {
        case none
        case linear
        case sqrt
    }

    public var referenceBatchSize: Int
    public var learningRateScaling: Scaling
    public var adaptRegime: Bool
    /// B_L / B_S.
    public var batchRatio: Double
    public var learningRateMultiplier: Double
    public var stepsMultiplier: Int
    /// The learning rate and rounds asked for, before scaling.
    public var baseLearningRate: Double
    public var baseRounds: Int

    /// Applies the regime to `configuration` (whose learning rate and rounds are the unscaled ones).
    public static func adapting(
        _ configuration: RunConfiguration, referenceBatchSize: Int, learningRateScaling: Scaling, adaptRegime: Bool
    ) throws(ConfigurationError) -> RunConfiguration {
        guard referenceBatchSize >= 1 else {
            throw ConfigurationError(
                field: "--reference-batch", reason: "must be at least 1, got \(referenceBatchSize)")
        }
        let ratio = Double(configuration.batchSize * configuration.workers) / Double(referenceBatchSize)
        let rateMultiplier: Double
        switch learningRateScaling {
        case .none: rateMultiplier = 1
        case .linear: rateMultiplier = ratio
        case .sqrt: rateMultiplier = ratio.squareRoot()
        }
        let stepsMultiplier = adaptRegime ? max(1, Int(ratio.rounded(.up))) : 1
        var adapted = configuration
        adapted.largeBatch = LargeBatchSettings(
            referenceBatchSize: referenceBatchSize, learningRateScaling: learningRateScaling, adaptRegime: adaptRegime,
            batchRatio: ratio, learningRateMultiplier: rateMultiplier, stepsMultiplier: stepsMultiplier,
            baseLearningRate: configuration.optimizer.schedule.baseRate,
            baseRounds: configuration.rounds)
        adapted.optimizer.schedule = configuration.optimizer.schedule.scaled(
            rate: rateMultiplier, steps: stepsMultiplier)
        let (rounds, overflow) = configuration.rounds.multipliedReportingOverflow(by: stepsMultiplier)
        guard !overflow else { throw ConfigurationError(field: "--regime-adaptation", reason: "too many rounds") }
        adapted.rounds = rounds
        return adapted
    }
}

/// Everything that determines a run's numbers. Sent by the coordinator to every worker and
/// written to `config.json`, so a run can be repeated exactly.
public struct RunConfiguration: Sendable, Equatable, Codable {
    public var runName: String
    public var seed: UInt64
    public var rounds: Int
    public var workers: Int
    public var model: ModelSpec
    /// Mini-batch size per worker and local step.
    public var batchSize: Int
    /// Local steps H between gossip rounds.
    public var localSteps: Int
    public var algorithm: GossipAlgorithm
    public var optimizer: OptimizerSettings
    public var data: DataSource
    public var partition: PartitionScheme
    /// The topology of every round (fixed, periodic or random).
    public var topology: TopologySchedule
    /// Gather parameters and compute Ξ² every this many rounds (and on the last).
    public var metricsEvery: Int
    /// Evaluate x̄ (and the workers' models) on the test set every this many rounds (and on the last).
    public var evalEvery: Int
    public var evaluateWorkers: Bool
    /// The workers' own models are evaluated on a fixed, seeded subset of this many test examples
    /// (0: the whole test set); x̄ always uses the whole test set.
    public var workerEvaluationSize: Int
    /// Curvature and sharpness measurements (see `SharpnessSettings`).
    public var sharpness: SharpnessSettings
    public var failurePolicy: FailurePolicy
    /// Faults injected on purpose (see `Fault`); dropped links are already in `topology`.
    public var faults: [Fault]
    /// Personalization over gossip: parameter slices (names, or name prefixes such as
    /// `layers.4`) that stay on their worker — never sent, never mixed (FedPer-style personal head).
    public var personalLayers: [String]
    /// Honest per-client evaluation: each worker's own model on a test split of this many examples
    /// drawn from that worker's own label distribution (0: off).
    public var clientTestSize: Int
    /// Hyperparameter selection without the test split: this fraction of each worker's own
    /// training examples (⌈f·n_k⌉, a seeded choice) is set aside, never trained on, and its
    /// deployed model is scored on it whenever it is scored on its test split (0: off; needs
    /// `clientTestSize`). A fraction, not a count: label-skewed shards differ in size by 100×.
    public var clientValidationFraction = 0.0
    /// Federated mode (the coordinator is the server); nil for gossip.
    public var federated: FederatedSettings?
    /// Batch norm: ghost batches, running statistics, and their policy across workers.
    public var batchNorm: BatchNormSettings
    /// The large-batch regime this configuration was adapted by (nil: none).
    public var largeBatch: LargeBatchSettings?
    /// Personalization: the algorithm and its hyperparameters.
    public var personalization: PersonalizationSettings
    /// E local epochs per round instead of `localSteps`: each client runs ⌈E·n_k/B⌉ steps on its
    /// n_k examples (so clients with more data take more steps, as in FedAvg).
    public var localEpochs: Double?
    /// Run even though plain gossip over this topology converges to a π-weighted average, not the
    /// plain one (row- but not column-stochastic weights, e.g. uniform weights on an irregular
    /// graph; see `ConsensusTarget`). Without it such a configuration is refused.
    public var allowBiasedAverage = false
    /// Average rounds whose mixing is the exact average over all workers (C-SGD) by all-reduce;
    /// off (`--no-all-reduce`): by gossip messages, as before the all-reduce existed (the bits
    /// differ in the last places: another summation order).
    public var allowsAllReduce = true
    /// Train on this fixed seeded subset of the training split only (nil: all of it); the same
    /// rows as x̄'s sharpness subset when `--sharpness-examples` has the same count.
    public var trainExamples: Int? = nil
    /// CHOCO-SGD's compressor and consensus step (nil for the other algorithms).
    public var gossipRule: GossipRuleSettings? = nil
    /// When the workers and the coordinator write a checkpoint (nil: never). Not part of what a
    /// resumed run must match: it changes when the state is saved, never a number.
    public var checkpoints: CheckpointSettings? = CheckpointSettings()

    /// Whether round `round` (1-based, completed) ends with a checkpoint by the round count.
    public func checkpointsByCount(afterRound round: Int) -> Bool {
        guard let every = checkpoints?.everyRounds, every > 0 else { return false }
        return round % every == 0 && round < rounds
    }

    /// The local steps per round of a client with `examples` training examples.
    public func localSteps(forExamples examples: Int) -> Int {
        guard let localEpochs else { return localSteps }
        return max(1, Int((localEpochs * Double(examples) / Double(batchSize)).rounded(.up)))
    }
    /// A worker (or the coordinator) silent this long is declared dead.
    public var failureTimeoutSeconds: Double
    public var heartbeatIntervalSeconds: Double
    /// A silent peer is declared dead after this long.
    public var peerTimeoutSeconds: Double
    /// Flow control: a worker may complete at most this many rounds that the coordinator has not
    /// yet recorded, which bounds the coordinator's backlog (and its memory) when it is slower.
    public var maxRoundsAhead: Int

    public init(
        runName: String, seed: UInt64, rounds: Int, workers: Int, model: ModelSpec, batchSize: Int, localSteps: Int,
        algorithm: GossipAlgorithm, optimizer: OptimizerSettings, data: DataSource, partition: PartitionScheme,
        topology: TopologySchedule, metricsEvery: Int, evalEvery: Int, evaluateWorkers: Bool,
        peerTimeoutSeconds: Double,
        maxRoundsAhead: Int = 8, workerEvaluationSize: Int = 1_000,
        sharpness: SharpnessSettings = SharpnessSettings(), failurePolicy: FailurePolicy = .abort,
        failureTimeoutSeconds: Double = 5, heartbeatIntervalSeconds: Double = 0.5, faults: [Fault] = [],
        personalLayers: [String] = [], clientTestSize: Int = 0, federated: FederatedSettings? = nil,
        batchNorm: BatchNormSettings = BatchNormSettings(), localEpochs: Double? = nil,
        personalization: PersonalizationSettings = PersonalizationSettings()
    ) {
        self.localEpochs = localEpochs
        self.batchNorm = batchNorm
        self.personalization = personalization
        self.federated = federated
        self.clientTestSize = clientTestSize
        self.faults = faults
        self.personalLayers = personalLayers
        self.failurePolicy = failurePolicy
        self.failureTimeoutSeconds = failureTimeoutSeconds
        self.heartbeatIntervalSeconds = heartbeatIntervalSeconds
        self.runName = runName
        self.seed = seed
        self.rounds = rounds
        self.workers = workers
        self.model = model
        self.batchSize = batchSize
        self.localSteps = localSteps
        self.algorithm = algorithm
        self.optimizer = optimizer
        self.data = data
        self.partition = partition
        self.topology = topology
        self.metricsEvery = metricsEvery
        self.evalEvery = evalEvery
        self.evaluateWorkers = evaluateWorkers
        self.peerTimeoutSeconds = peerTimeoutSeconds
        self.maxRoundsAhead = maxRoundsAhead
        self.workerEvaluationSize = workerEvaluationSize
        self.sharpness = sharpness
    }

    /// Cross-field checks; each message names the flag at fault.
    public func validate() throws(ConfigurationError) {
        func check(_ condition: Bool, _ field: String, _ reason: String) throws(ConfigurationError) {
            if !condition { throw ConfigurationError(field: field, reason: reason) }
        }
        try check(workers >= 1, "--workers", "must be at least 1, got \(workers)")
        try check(rounds >= 1, "--rounds", "must be at least 1, got \(rounds)")
        try check(batchSize >= 1, "--batch", "must be at least 1, got \(batchSize)")
        try check(localSteps >= 1, "--local-steps", "must be at least 1, got \(localSteps)")
        // Before anything builds a network or walks the topology from these values.
        try validateRanges()
        try check(metricsEvery >= 1, "--metrics-every", "must be at least 1, got \(metricsEvery)")
        try check(evalEvery >= 1, "--eval-every", "must be at least 1, got \(evalEvery)")
        try check(workerEvaluationSize >= 0, "--worker-eval-size", "must be ≥ 0, got \(workerEvaluationSize)")
        try check(sharpness.every >= 0, "--sharpness-every", "must be ≥ 0 (0 turns it off), got \(sharpness.every)")
        try check(sharpness.examples >= 1, "--sharpness-examples", "must be at least 1, got \(sharpness.examples)")
        try check(
            sharpness.lanczosIterations >= 1 && sharpness.hutchinsonProbes >= 2,
            "--lanczos-iterations/--hutchinson-probes",
            "need at least 1 Lanczos iteration and 2 Hutchinson probes")
        try check(sharpness.samRadius > 0, "--sam-radius", "must be positive, got \(sharpness.samRadius)")
        try check(sharpness.gaussianSigma > 0, "--gaussian-sigma", "must be positive, got \(sharpness.gaussianSigma)")
        if let bad = sharpness.workers.first(where: { !(0..<workers).contains($0) }) {
            throw ConfigurationError(field: "--sharpness-workers", reason: "worker \(bad) is not in 0..<\(workers)")
        }
        try check(
            heartbeatIntervalSeconds > 0 && failureTimeoutSeconds >= 2 * heartbeatIntervalSeconds, "--failure-timeout",
            "must be at least twice --heartbeat-interval (\(heartbeatIntervalSeconds) s), got \(failureTimeoutSeconds)")
        let layout = Network(spec: model).layout
        for name in personalLayers
        where !layout.slices.contains(where: { $0.name == name || $0.name.hasPrefix(name + ".") }) {
            throw ConfigurationError(
                field: "--personal-layers",
                reason:
                    "'\(name)' names no parameter slice of \(model) (\(layout.slices.map(\.name).joined(separator: ", ")))"
            )
        }
        try check(
            personalLayers.isEmpty || !topology.requiresPushSum, "--personal-layers",
            "personal layers do not combine with push-sum")
        if let federated {
            try check(
                federated.clientFraction > 0 && federated.clientFraction <= 1, "--client-fraction",
                "must be in (0, 1], got \(federated.clientFraction)")
            try check(federated.proximalMu >= 0, "--proximal-mu", "must be ≥ 0, got \(federated.proximalMu)")
            try check(!topology.requiresPushSum, "--federated", "federated mode uses the server, not push-sum")
        }
        try check(clientTestSize >= 0, "--client-test-size", "must be ≥ 0, got \(clientTestSize)")
        try check(
            (0..<1).contains(clientValidationFraction), "--client-validation-fraction",
            "must be in [0, 1), got \(clientValidationFraction)")
        try check(
            clientValidationFraction == 0 || clientTestSize > 0, "--client-validation-fraction",
            "needs --client-test-size (the validation split is scored alongside each client's test split)")
        if let ghost = batchNorm.virtualBatchSize {
            try check(model.batchNorm, "--virtual-batch-size", "the model \(model) has no batch norm (add :bn)")
            try check(
                ghost >= 1 && batchSize % ghost == 0, "--virtual-batch-size",
                "must divide the per-worker batch \(batchSize), got \(ghost)")
        }
        try check(
            batchNorm.momentum > 0 && batchNorm.momentum <= 1, "--bn-momentum",
            "must be in (0, 1], got \(batchNorm.momentum)")
        try check(
            !(model.batchNorm && federated != nil && batchNorm.policy == .local
                && batchNorm.averageModelStatistics == .averaged), "--bn-policy",
            "with local batch-norm statistics the server's model has none; use --average-model-bn recomputed")
        try validatePersonalization()
        if let localEpochs {
            try check(
                localEpochs > 0 && localEpochs.isFinite, "--local-epochs", "must be positive, got \(localEpochs)")
        }
        if let clip = optimizer.gradientClipNorm {
            try check(clip > 0 && clip.isFinite, "--clip-norm", "must be positive, got \(clip)")
        }
        if let checkpoints {
            try check(
                checkpoints.everyRounds >= 0, "--checkpoint-every",
                "must be ≥ 0 rounds (0 turns checkpoints off), got \(checkpoints.everyRounds)")
            if let seconds = checkpoints.everySeconds {
                try check(
                    seconds > 0 && seconds.isFinite, "--checkpoint-every",
                    "the wall-time interval must be positive, got \(seconds) s")
            }
        }
        try check(maxRoundsAhead >= 1, "--max-rounds-ahead", "must be at least 1, got \(maxRoundsAhead)")
        try check(peerTimeoutSeconds > 0, "--peer-timeout", "must be positive, got \(peerTimeoutSeconds)")
        try check(
            topology.nodeCount == workers, "--topology",
            "\(topology.name) has \(topology.nodeCount) nodes but \(workers) workers were requested")
        if !allowBiasedAverage, federated == nil, let target = topology.consensusTarget, target.isBiased {
            throw ConfigurationError(
                field: "--topology",
                reason:
                    "\(topology.name): \(target.description). Use doubly stochastic weights (--weights metropolis-hastings or sinkhorn), a column-stochastic digraph (push-sum), or pass --allow-biased-average to run it anyway"
            )
        }
        if let problem = optimizer.schedule.problem {
            throw ConfigurationError(field: "--lr/--lr-schedule", reason: problem)
        }
        let rate = optimizer.schedule.learningRate(atStep: 0)
        try check(rate.isFinite && rate > 0, "--lr", "learning rate must be positive and finite, got \(rate)")
        try check(
            optimizer.momentum >= 0 && optimizer.momentum < 1, "--momentum",
            "must be in [0, 1), got \(optimizer.momentum)")
        try check(optimizer.weightDecay >= 0, "--weight-decay", "must be non-negative, got \(optimizer.weightDecay)")
        try validateGossipRule()
    }

    /// What the algorithms that run as `GossipRule` values need: gossip over doubly stochastic
    /// weights, every coordinate shared, every worker to the end; gradient tracking one plain SGD
    /// gradient per round on a model without batch norm.
    func validateGossipRule() throws(ConfigurationError) {
        func check(_ condition: Bool, _ field: String, _ reason: String) throws(ConfigurationError) {
            if !condition { throw ConfigurationError(field: field, reason: reason) }
        }
        let name = algorithm.rawValue
        if algorithm == .adaptThenCombine || algorithm == .combineThenAdapt {
            try check(gossipRule == nil, "--compressor/--consensus-step", "apply to --algorithm choco only")
            return
        }
        try check(federated == nil, "--algorithm", "\(name) is a gossip algorithm; it does not run with --federated")
        try check(
            !topology.requiresPushSum && topology.consensusTarget.map { !$0.isBiased } ?? true, "--topology",
            "\(name) needs doubly stochastic mixing weights; \(topology.name) has not (push-sum and biased averages are for atc and cta)"
        )
        try check(
            personalization.algorithm == .none && personalLayers.isEmpty && batchNorm.policy == .averaged,
            "--algorithm",
            "\(name) shares every coordinate: it does not combine with personalization, --personal-layers or --bn-policy local"
        )
        try check(
            failurePolicy == .abort, "--on-failure",
            "\(name) keeps state for its peers and cannot go on without one: use --on-failure abort")
        switch algorithm {
        case .choco:
            let step = (gossipRule ?? GossipRuleSettings()).consensusStep
            try check(step > 0 && step <= 1, "--consensus-step", "must be in (0, 1], got \(step)")
        case .gradientTracking:
            try check(
                localSteps == 1 && localEpochs == nil, "--local-steps",
                "gradient tracking takes one gradient per round (got \(localEpochs.map { "--local-epochs \($0)" } ?? "\(localSteps) local steps"))"
            )
            try check(
                optimizer.momentum == 0 && optimizer.gradientClipNorm == nil
                    && (optimizer.weightDecay == 0 || optimizer.weightDecayMode == .coupled),
                "--momentum/--weight-decay-mode/--clip-norm",
                "gradient tracking runs plain SGD steps along its tracker (weight decay only coupled: an L2 term)")
            try check(
                !model.batchNorm, "--model", "gradient tracking needs a model without batch norm (\(model) has it)")
        case .adaptThenCombine, .combineThenAdapt:
            break
        }
    }

    /// The numeric ranges no flag parser guarantees for a configuration that comes from a file
    /// (`--config`) or a message (a worker's assignment): every count, size and coefficient.
    func validateRanges() throws(ConfigurationError) {
        func check(_ condition: Bool, _ field: String, _ reason: String) throws(ConfigurationError) {
            if !condition { throw ConfigurationError(field: field, reason: reason) }
        }
        // Finite here; each field's own range (sign, bounds) is checked with its own message below.
        func finite(_ value: Double, _ field: String) throws(ConfigurationError) {
            try check(value.isFinite, field, "must be a finite number, got \(value)")
        }
        try check(workers <= 65_536, "--workers", "at most 65,536, got \(workers)")
        if let trainExamples {
            try check(
                trainExamples >= workers, "--train-examples",
                "must give every worker an example: at least \(workers), got \(trainExamples)")
        }
        try check(rounds <= 1_000_000_000, "--rounds", "at most 10⁹, got \(rounds)")
        try check(batchSize <= 1 << 20, "--batch", "at most 2²⁰, got \(batchSize)")
        try check(localSteps <= 1 << 24, "--local-steps", "at most 2²⁴, got \(localSteps)")
        try check(
            model.widths.count >= 2 && model.widths.allSatisfy({ (1...(1 << 24)).contains($0) }), "--model",
            "layer widths must be between 1 and 2²⁴, got \(model.widths)")
        if model.kind == .cnn {
            try check(
                model.imageShape.count == 3 && model.imageShape.allSatisfy({ (1...4_096).contains($0) })
                    && !model.convolutionChannels.isEmpty
                    && model.convolutionChannels.allSatisfy({ (1...4_096).contains($0) })
                    && model.widths[0] == model.imageShape.reduce(1, *),
                "--model", "a CNN needs an image shape H×W×C and channel counts between 1 and 4,096")
        }
        let s = sharpness
        try check(
            s.topEigenvalueCount >= 1 && s.slqProbes >= 1 && s.slqIterations >= 1 && s.densityBins >= 1
                && s.perLayerIterations >= 1 && s.perLayerProbes >= 1 && s.samAscentSteps >= 1
                && s.mSharpnessBatch >= 1,
            "sharpness", "every count of the sharpness settings must be at least 1")
        try check(
            s.perturbationSamples >= 1, "--perturbation-samples", "must be at least 1, got \(s.perturbationSamples)")
        try check(s.lanczosIterations <= 10_000, "--lanczos-iterations", "at most 10,000, got \(s.lanczosIterations)")
        try finite(s.samRadius, "--sam-radius")
        try check(
            s.eigenTolerance.isFinite && s.eigenTolerance >= 0, "--eigen-tolerance",
            "must be finite and ≥ 0, got \(s.eigenTolerance)")
        try check(
            s.perLayerIterations <= 10_000, "--per-layer-lanczos-iterations",
            "at most 10,000, got \(s.perLayerIterations)")
        try finite(s.gaussianSigma, "--gaussian-sigma")
        try finite(optimizer.momentum, "--momentum")
        try finite(optimizer.weightDecay, "--weight-decay")
        try finite(failureTimeoutSeconds, "--failure-timeout")
        try finite(heartbeatIntervalSeconds, "--heartbeat-interval")
        try finite(peerTimeoutSeconds, "--peer-timeout")
        try check(
            batchNorm.recomputeExamples >= 1, "--bn-recompute-examples",
            "must be at least 1, got \(batchNorm.recomputeExamples)")
        let p = personalization
        for (value, field) in [
            (p.dittoLambda, "--ditto-lambda"), (p.apflAlphaLearningRate, "--apfl-alpha-lr"),
            (p.additiveLambda, "--additive-lambda"), (p.additiveMu, "--additive-mu"),
            (p.curriculumRounds, "--curriculum-rounds"), (federated?.proximalMu ?? 0, "--proximal-mu"),
        ] {
            try finite(value, field)
        }
        if case .synthetic(_, let trainCount, let testCount, let featureCount) = data {
            try check(
                (1...10_000_000).contains(trainCount) && (1...10_000_000).contains(testCount)
                    && (1...(1 << 20)).contains(featureCount), "--data",
                "synthetic sizes out of range: \(trainCount) training, \(testCount) test examples of \(featureCount) features"
            )
        }
        for fault in faults {
            try check(
                fault.isWithin(workers: workers, rounds: rounds), "--fault",
                "\(fault) names a worker or round outside the run")
        }
        if let regime = largeBatch {
            try check(
                regime.referenceBatchSize >= 1 && regime.stepsMultiplier >= 1 && regime.batchRatio.isFinite
                    && regime.learningRateMultiplier.isFinite && regime.learningRateMultiplier > 0,
                "--reference-batch", "the large-batch settings are out of range")
        }
    }

    /// Whether workers send their parameters to the coordinator after round `round` (1-based).
    public func gathersParameters(afterRound round: Int) -> Bool {
        federated != nil || round % metricsEvery == 0 || round % evalEvery == 0 || round == rounds
            || measuresSharpness(afterRound: round)
    }

    /// Whether curvature and sharpness are measured after round `round` (1-based).
    public func measuresSharpness(afterRound round: Int) -> Bool {
        sharpness.every > 0 && (round % sharpness.every == 0 || round == rounds)
    }

    public func evaluates(afterRound round: Int) -> Bool { round % evalEvery == 0 || round == rounds }
}

public struct ConfigurationError: Error, CustomStringConvertible {
    public var field: String
    public var reason: String
    public init(field: String, reason: String) {
        self.field = field
        self.reason = reason
    }
    public var description: String { "\(field): \(reason)" }
}

extension RunConfiguration {
    /// The configuration a user's choices describe, with what follows from them applied (for a
    /// configuration built from flags; a recorded one already has them):
    /// - federated clients talk only to the server, so the gossip graph is `solo`;
    /// - links dropped by `--drop-link` faults are absent in their rounds (weights recomputed);
    /// - the layers the personalization algorithm keeps private (FedPer's and FedRep's head,
    ///   FedBN's batch-norm layers) join `personalLayers`, and FedBN keeps the batch-norm running
    ///   statistics local too.
    public func withImpliedSettings() -> RunConfiguration {
        var configuration = self
        if federated != nil {
            configuration.topology = .fixed(try! Topology.generated(.solo, nodeCount: workers))
        } else {
            configuration.topology = topology.dropping(faults)
        }
        let strategy = personalization.algorithm.strategyType
        for layer in strategy.privateLayers(of: Network(spec: model))
        where !configuration.personalLayers.contains(layer) {
            configuration.personalLayers.append(layer)
        }
        if strategy.keepsBatchNormStatisticsLocal { configuration.batchNorm.policy = .local }
        return configuration
    }

    /// The coordinates of the personal slices in `layout`.
    public func personalRanges(in layout: ParameterLayout) -> [Range<Int>] {
        layout.slices.filter { slice in personalLayers.contains { slice.name == $0 || slice.name.hasPrefix($0 + ".") } }
            .map(\.range)
    }

    /// Whether the coordinator can assemble a complete x̄: not in federated mode with personal
    /// trainable slices (they never reach the server, so the global model lacks them, and x̄'s test
    /// figures would score zeros there; the per-client figures are the meaningful ones).
    public var averageModelIsComplete: Bool {
        guard federated != nil else { return true }
        let layout = Network(spec: model).layout
        return !layout.slices.contains { slice in
            slice.role == .trainable && personalRanges(in: layout).contains(slice.range)
        }
    }

    /// Everything that never leaves a worker: the personal slices and, under the `local`
    /// batch-norm policy, the running statistics.
    public func localRanges(in layout: ParameterLayout) -> [Range<Int>] {
        var ranges = personalRanges(in: layout)
        if batchNorm.policy == .local {
            for slice in layout.slices where slice.role == .state && !ranges.contains(slice.range) {
                ranges.append(slice.range)
            }
        }
        return ranges.sorted { $0.lowerBound < $1.lowerBound }
    }
}

extension RunConfiguration {
    func validatePersonalization() throws(ConfigurationError) {
        func check(_ condition: Bool, _ field: String, _ reason: String) throws(ConfigurationError) {
            if !condition { throw ConfigurationError(field: field, reason: reason) }
        }
        let settings = personalization
        let name = settings.algorithm.rawValue
        try check(settings.dittoLambda >= 0, "--ditto-lambda", "must be ≥ 0, got \(settings.dittoLambda)")
        try check(settings.additiveLambda >= 0, "--additive-lambda", "must be ≥ 0, got \(settings.additiveLambda)")
        try check(settings.additiveMu >= 0, "--additive-mu", "must be ≥ 0, got \(settings.additiveMu)")
        try check((0...1).contains(settings.apflAlpha), "--apfl-alpha", "must be in [0, 1], got \(settings.apflAlpha)")
        try check(
            settings.apflAlphaLearningRate >= 0, "--apfl-alpha-lr", "must be ≥ 0, got \(settings.apflAlphaLearningRate)"
        )
        if let rate = settings.fineTuneLearningRate {
            try check(rate > 0 && rate.isFinite, "--fine-tune-lr", "must be positive and finite, got \(rate)")
        }
        try check(settings.fineTuneSteps >= 1, "--fine-tune-steps", "must be at least 1, got \(settings.fineTuneSteps)")
        try check(settings.headSteps >= 0, "--head-steps", "must be ≥ 0, got \(settings.headSteps)")
        try check(
            settings.curriculumRounds > 0, "--curriculum-rounds", "must be positive, got \(settings.curriculumRounds)")
        let layout = Network(spec: model).layout
        for name in settings.additiveLayers
        where !layout.slices.contains(where: { $0.name == name || $0.name.hasPrefix(name + ".") }) {
            throw ConfigurationError(
                field: "--additive-layers",
                reason:
                    "'\(name)' names no parameter slice of \(model) (\(layout.slices.map(\.name).joined(separator: ", ")))"
            )
        }
        guard settings.algorithm != .none else { return }
        try check(!topology.requiresPushSum, "--personalization", "\(name) does not combine with push-sum")
        let facts = PersonalizationRunFacts(
            modelHasBatchNorm: model.batchNorm,
            communicates: federated != nil || topology.topology(atRound: 0).graph.edgeCount > 0,
            hasPrivateLayers: !personalLayers.isEmpty)
        if let refusal = settings.algorithm.strategyType.refusal(facts) {
            throw ConfigurationError(field: "--personalization", reason: refusal)
        }
    }

    /// How batch norm trains and is evaluated, in words for reports (nil without batch norm).
    public var batchNormDescription: String? {
        guard model.batchNorm else { return nil }
        let settings = batchNorm
        let groups =
            settings.virtualBatchSize.map { "ghost batches of \($0) (of \(batchSize))" }
            ?? "the whole batch of \(batchSize)"
        let average =
            settings.averageModelStatistics == .recomputed
            ? "recomputed for x̄ on \(settings.recomputeExamples) training examples"
            : "averaged over the workers"
        return
            "training: batch statistics of \(groups), running statistics \(settings.runningStatisticsRule.rawValue), momentum \(settings.momentum); across workers: \(settings.policy == .local ? "kept local" : "averaged like parameters"); evaluation: running statistics (x̄: \(average); each worker: its own)"
    }

    /// The large-batch regime in words for reports (nil when none was applied).
    public var largeBatchDescription: String? {
        guard let regime = largeBatch else { return nil }
        let ratio = String(format: "%.4g", regime.batchRatio)
        let rate = String(format: "%.4g", regime.learningRateMultiplier)
        return
            "B_L/B_S = \(batchSize * workers)/\(regime.referenceBatchSize) = \(ratio); learning rate \(regime.baseLearningRate) × \(rate) (\(regime.learningRateScaling.rawValue)); "
            + (regime.adaptRegime
                ? "regime adaptation: \(regime.baseRounds) × \(regime.stepsMultiplier) = \(rounds) rounds"
                : "no regime adaptation (\(rounds) rounds)")
    }
}

extension RunConfiguration {
    /// Fields added after the first release have defaults, so an older `config.json` still
    /// decodes (as the run it describes: the defaults are what that version did).
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(
            runName: try c.decode(String.self, forKey: .runName), seed: try c.decode(UInt64.self, forKey: .seed),
            rounds: try c.decode(Int.self, forKey: .rounds), workers: try c.decode(Int.self, forKey: .workers),
            model: try c.decode(ModelSpec.self, forKey: .model), batchSize: try c.decode(Int.self, forKey: .batchSize),
            localSteps: try c.decode(Int.self, forKey: .localSteps),
            algorithm: try c.decode(GossipAlgorithm.self, forKey: .algorithm),
            optimizer: try c.decode(OptimizerSettings.self, forKey: .optimizer),
            data: try c.decode(DataSource.self, forKey: .data),
            partition: try c.decode(PartitionScheme.self, forKey: .partition),
            topology: try c.decode(TopologySchedule.self, forKey: .topology),
            metricsEvery: try c.decode(Int.self, forKey: .metricsEvery),
            evalEvery: try c.decode(Int.self, forKey: .evalEvery),
            evaluateWorkers: try c.decode(Bool.self, forKey: .evaluateWorkers),
            peerTimeoutSeconds: try c.decode(Double.self, forKey: .peerTimeoutSeconds),
            maxRoundsAhead: try c.decodeIfPresent(Int.self, forKey: .maxRoundsAhead) ?? 8,
            workerEvaluationSize: try c.decodeIfPresent(Int.self, forKey: .workerEvaluationSize) ?? 1_000,
            sharpness: try c.decodeIfPresent(SharpnessSettings.self, forKey: .sharpness) ?? SharpnessSettings(),
            failurePolicy: try c.decodeIfPresent(FailurePolicy.self, forKey: .failurePolicy) ?? .abort,
            failureTimeoutSeconds: try c.decodeIfPresent(Double.self, forKey: .failureTimeoutSeconds) ?? 5,
            heartbeatIntervalSeconds: try c.decodeIfPresent(Double.self, forKey: .heartbeatIntervalSeconds) ?? 0.5,
            faults: try c.decodeIfPresent([Fault].self, forKey: .faults) ?? [],
            personalLayers: try c.decodeIfPresent([String].self, forKey: .personalLayers) ?? [],
            clientTestSize: try c.decodeIfPresent(Int.self, forKey: .clientTestSize) ?? 0,
            federated: try c.decodeIfPresent(FederatedSettings.self, forKey: .federated),
            batchNorm: try c.decodeIfPresent(BatchNormSettings.self, forKey: .batchNorm) ?? BatchNormSettings(),
            localEpochs: try c.decodeIfPresent(Double.self, forKey: .localEpochs),
            personalization: try c.decodeIfPresent(PersonalizationSettings.self, forKey: .personalization)
                ?? PersonalizationSettings())
        largeBatch = try c.decodeIfPresent(LargeBatchSettings.self, forKey: .largeBatch)
        // Versions before the check ran such topologies without asking.
        allowBiasedAverage = try c.decodeIfPresent(Bool.self, forKey: .allowBiasedAverage) ?? true
        // Versions before the all-reduce averaged C-SGD by gossip.
        allowsAllReduce = try c.decodeIfPresent(Bool.self, forKey: .allowsAllReduce) ?? false
        trainExamples = try c.decodeIfPresent(Int.self, forKey: .trainExamples)
        clientValidationFraction = try c.decodeIfPresent(Double.self, forKey: .clientValidationFraction) ?? 0
        gossipRule = try c.decodeIfPresent(GossipRuleSettings.self, forKey: .gossipRule)
        // Versions before checkpoints wrote none.
        checkpoints = try c.decodeIfPresent(CheckpointSettings.self, forKey: .checkpoints)
    }
}

extension RunConfiguration {
    /// What is shared and what stays on each client, in words for reports (nil: everything shared).
    public var personalizationDescription: String? {
        let layout = Network(spec: model).layout
        let local = layout.slices.filter { slice in localRanges(in: layout).contains(slice.range) }.map(\.name)
        let settings = personalization
        var parts = [settings.algorithm.strategyType.describe(settings)].compactMap { $0 }
        if !local.isEmpty { parts.append("never sent: " + local.joined(separator: ", ")) }
        return parts.isEmpty ? nil : parts.joined(separator: "; ")
    }
}
