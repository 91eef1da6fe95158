import Algorithms
import ArgumentParser
import Datasets
import Diagnostics
import Foundation
import LearningCore
import Optimizers
import Runtime
import Topologies

/// The flags that define a run, shared by `coordinator` and `simulate`, grouped by concern (the
/// groups are the sections of `dsgd help simulate`). Values parse themselves where they are
/// typed (a model, a partition, a schedule, a compressor), so a bad one is refused with its
/// reason before anything starts; what follows from the choices (a federated run's star, the
/// layers an algorithm keeps private, dropped links) is the configuration's own rule
/// (`RunConfiguration.withImpliedSettings()`), not the command line's.
struct RunOptions: ParsableArguments {
    @OptionGroup(title: "Topology and gossip") var gossip: GossipOptions
    @OptionGroup(title: "Model and data") var learning: ModelAndDataOptions
    @OptionGroup(title: "Optimization") var optimization: OptimizationOptions
    @OptionGroup(title: "Batch norm") var batchNorm: BatchNormOptions
    @OptionGroup(title: "Federated learning and personalization") var personal: PersonalizationOptions
    @OptionGroup(title: "Diagnostics") var diagnostics: DiagnosticsOptions
    @OptionGroup(title: "Faults and failures") var faults: FaultOptions
    @OptionGroup(title: "Run folder") var folder: RunFolderOptions

    var overwrite: Bool { folder.overwrite }

    func makeConfiguration() throws -> (RunConfiguration, URL) {
        var (configuration, directory) = try makeRunConfiguration()
        if let every = folder.checkpointEvery {
            guard every >= 0 else { throw ValidationError("--checkpoint-every: must be ≥ 0 (0: never), got \(every)") }
            configuration.checkpoints = every == 0 ? nil : CheckpointSettings(everyRounds: every, everySeconds: nil)
        }
        if folder.resume && folder.runDir == nil {
            throw ValidationError("--resume needs --run-dir: the run folder to continue")
        }
        return (configuration, directory)
    }

    private func makeRunConfiguration() throws -> (RunConfiguration, URL) {
        if let config = folder.config { return try loadConfiguration(config) }
        let workers = gossip.workers
        let rounds = optimization.rounds
        var faultList: [Fault] = []
        do {
            for (kind, values) in [
                ("straggler", faults.straggler), ("drop-link", faults.dropLink), ("delay-link", faults.delayLink),
                ("kill-worker", faults.killWorker),
            ] {
                for value in values {
                    faultList.append(try Fault.parse(value, kind: kind, workers: workers, rounds: rounds))
                }
            }
        } catch {
            throw ValidationError("\(error)")
        }
        guard optimization.warmupSteps >= 0 else {
            throw ValidationError("--warmup: must be ≥ 0, got \(optimization.warmupSteps)")
        }
        if personal.clientMomentum != nil && personal.federated == nil {
            throw ValidationError(
                "--client-momentum: applies to federated runs (--federated fedavg|fedprox); gossip keeps every worker's momentum"
            )
        }
        let optimizer = OptimizerSettings(
            schedule: optimization.lrSchedule.schedule(
                baseRate: optimization.learningRate, warmup: optimization.warmupSteps),
            momentumKind: optimization.momentum == 0 ? .none : (optimization.nesterov ? .nesterov : .heavyBall),
            momentum: optimization.momentum, weightDecay: optimization.weightDecay,
            weightDecayMode: optimization.weightDecayMode, gradientClipNorm: optimization.clipNorm,
            scheduleUnit: optimization.lrScheduleUnit)
        let graph = try makeTopology()
        let directory = URL(
            fileURLWithPath: folder.runDir ?? defaultRunDirectory(topologyName: graph.name, workerCount: workers))
        let network = Network(spec: learning.model)
        var configuration = RunConfiguration(
            runName: directory.lastPathComponent, seed: learning.seed, rounds: rounds, workers: workers,
            model: learning.model, batchSize: optimization.batch, localSteps: optimization.localSteps,
            algorithm: gossip.algorithm, optimizer: optimizer, data: try learning.dataSource(),
            partition: learning.partition,
            topology: graph, metricsEvery: diagnostics.metricsEvery, evalEvery: diagnostics.evalEvery,
            evaluateWorkers: !diagnostics.noEvalWorkers, peerTimeoutSeconds: faults.peerTimeout,
            maxRoundsAhead: faults.maxRoundsAhead, workerEvaluationSize: diagnostics.workerEvalSize,
            sharpness: try diagnostics.sharpnessSettings(), failurePolicy: faults.onFailure,
            failureTimeoutSeconds: faults.failureTimeout, heartbeatIntervalSeconds: faults.heartbeatInterval,
            faults: faultList,
            personalLayers: commaSeparated(personal.personalLayers)
                + (personal.personalHead ? FedPer.privateLayers(of: network) : []),
            clientTestSize: personal.clientTestSize,
            federated: personal.federated.map {
                FederatedSettings(
                    clientFraction: personal.clientFraction, proximalMu: $0 == .fedprox ? personal.proximalMu : 0,
                    clientMomentum: personal.clientMomentum ?? .reset)
            },
            batchNorm: BatchNormSettings(
                virtualBatchSize: batchNorm.virtualBatchSize, runningStatisticsRule: batchNorm.runningStats,
                momentum: batchNorm.bnMomentum, policy: batchNorm.bnPolicy,
                averageModelStatistics: batchNorm.averageModelBn, recomputeExamples: batchNorm.bnRecomputeExamples),
            localEpochs: optimization.localEpochs,
            personalization: PersonalizationSettings(
                algorithm: personal.personalization, fineTuneSteps: personal.fineTuneSteps,
                headSteps: personal.headSteps, dittoLambda: personal.dittoLambda, apflAlpha: personal.apflAlpha,
                apflAlphaLearningRate: personal.apflAlphaLr, additiveLambda: personal.additiveLambda,
                additiveMu: personal.additiveMu, curriculum: personal.curriculum,
                curriculumRounds: personal.curriculumRounds))
        configuration.personalization.fineTuneLearningRate = personal.fineTuneLr
        configuration.personalization.additiveLayers = commaSeparated(personal.additiveLayers)
        configuration.allowBiasedAverage = gossip.allowBiasedAverage
        configuration.allowsAllReduce = !gossip.noAllReduce
        configuration.trainExamples = learning.trainExamples
        configuration.clientValidationFraction = personal.clientValidationFraction
        if gossip.algorithm == .choco || gossip.compressor != nil || gossip.consensusStep != nil {
            var rule = GossipRuleSettings()
            if let compressor = gossip.compressor { rule.compressor = compressor }
            if let consensusStep = gossip.consensusStep { rule.consensusStep = consensusStep }
            configuration.gossipRule = rule
        }
        configuration = configuration.withImpliedSettings()
        let largeBatch = optimization
        if largeBatch.referenceBatch == nil && (largeBatch.lrScaling != .none || largeBatch.regimeAdaptation) {
            throw ValidationError("--lr-scaling and --regime-adaptation need --reference-batch (the small total batch)")
        }
        do {
            if let referenceBatch = largeBatch.referenceBatch {
                configuration = try LargeBatchSettings.adapting(
                    configuration, referenceBatchSize: referenceBatch, learningRateScaling: largeBatch.lrScaling,
                    adaptRegime: largeBatch.regimeAdaptation)
            }
            try configuration.validate()
        } catch {
            throw ValidationError("\(error)")
        }
        return (configuration, directory)
    }

    /// The configuration recorded in an earlier run's config.json.
    private func loadConfiguration(_ path: String) throws -> (RunConfiguration, URL) {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ValidationError("--config: cannot read '\(path)'")
        }
        var configuration: RunConfiguration
        do {
            configuration = try JSONDecoder().decode(RunManifest.self, from: data).configuration
        } catch {
            throw ValidationError("--config: \(path) is not a dsgd config.json: \(error)")
        }
        let directory = URL(
            fileURLWithPath: folder.runDir
                ?? defaultRunDirectory(topologyName: configuration.topology.name, workerCount: configuration.workers))
        configuration.runName = directory.lastPathComponent
        do { try configuration.validate() } catch { throw ValidationError("--config: \(path): \(error)") }
        return (configuration, directory)
    }

    private func makeTopology() throws -> TopologySchedule {
        let workers = gossip.workers
        guard workers >= 1 else { throw ValidationError("--workers: must be at least 1, got \(workers)") }
        let schedule = try loadSchedule(
            gossip.topology, nodeCount: workers, seed: learning.seed, weights: gossip.weights, flag: "--topology")
        guard schedule.nodeCount == workers else {
            throw ValidationError(
                "--topology: \(gossip.topology) declares \(schedule.nodeCount) nodes but --workers is \(workers)")
        }
        return schedule
    }

    private func defaultRunDirectory(topologyName: String, workerCount: Int) -> String {
        let formatter = DateFormatter()
        formatter.dateFormat = "yyyyMMdd-HHmmss"
        formatter.timeZone = TimeZone(identifier: "UTC")
        let base = (topologyName as NSString).lastPathComponent.replacingOccurrences(of: ".edges", with: "")
        return "runs/\(formatter.string(from: Date()))-\(base)-n\(workerCount)"
    }
}

private func commaSeparated(_ text: String) -> [String] {
    text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
}

struct GossipOptions: ParsableArguments {
    @Option(help: "Number of worker processes.")
    var workers: Int = 8

    @Option(
        help:
            "A generator (\(GraphGenerator.names.joined(separator: ", "))), a schedule (\(TopologySchedule.names.joined(separator: ", "))), or a file; 'complete' is C-SGD."
    )
    var topology: String = "ring"

    @Option(
        help: "Mixing weights for a generated topology: \(WeightRule.allCases.map(\.rawValue).joined(separator: ", "))."
    )
    var weights: WeightRule?

    @Option(
        help:
            "atc (adapt-then-combine), cta (combine-then-adapt, D-PSGD), choco (CHOCO-SGD: compressed gossip, see --compressor and --consensus-step) or gradient-tracking (x and a tracker of the average gradient; one plain SGD gradient per round)."
    )
    var algorithm: GossipAlgorithm = .adaptThenCombine

    @Option(
        help:
            "CHOCO-SGD's compressor: top-k:RATIO (largest magnitudes), random-k:RATIO, sign (scaled by the mean magnitude), qsgd:LEVELS (scaled to contract) or identity. (default: top-k:0.1)",
        transform: { try Compressor(parsing: $0) })
    var compressor: Compressor?

    @Option(help: "CHOCO-SGD's consensus step size γ in (0, 1]. (default: 0.5)")
    var consensusStep: Double?

    @Flag(
        help:
            "Run a topology whose weights are row- but not column-stochastic (e.g. uniform weights on an irregular graph), where gossip converges to a π-weighted average instead of the plain one."
    )
    var allowBiasedAverage = false

    @Flag(
        help:
            "Average C-SGD rounds (mixing that is the exact average over all workers, e.g. --topology complete) by gossip messages instead of the all-reduce."
    )
    var noAllReduce = false
}

struct ModelAndDataOptions: ParsableArguments {
    @Option(
        help:
            "Model: MLP widths, e.g. 784-256-256-10 (784-10 is logistic regression; add :tanh, :bn for batch norm), or cnn (= cnn:28x28x1-16-32-10: 3×3 conv, batch norm, ReLU, 2×2 pool per stage; :nobn without batch norm). (default: 784-256-256-10)",
        transform: { try ModelSpec(parsing: $0) })
    var model: ModelSpec = ModelSpec(widths: [784, 256, 256, 10])

    @Option(
        help:
            "'auto' (Fashion-MNIST if installed, else synthetic), 'synthetic', 'synthetic:SEED', or a folder of IDX files."
    )
    var data: String = "auto"

    /// The data set, found on this machine (what `auto` is here).
    func dataSource() throws -> DataSource {
        do { return try DataLoader.resolve(data) } catch { throw ValidationError("--data: \(error)") }
    }

    @Option(
        help:
            "Partition across workers: iid, dirichlet:α (label skew), pathological:K (K classes each) or lognormal:σ (unbalanced sizes). (default: iid)",
        transform: { try PartitionScheme(parsing: $0) })
    var partition: PartitionScheme = .iid

    @Option(help: "Seed for initialisation, partitions and batch order.")
    var seed: UInt64 = 0

    @Option(
        help:
            "Train on this fixed seeded subset of the training set only (the same rows as --sharpness-examples of the same count: curvature on exactly the training examples)."
    )
    var trainExamples: Int?
}

struct OptimizationOptions: ParsableArguments {
    @Option(help: "Gossip rounds.")
    var rounds: Int = 500

    @Option(help: "Mini-batch size per worker and local step.")
    var batch: Int = 32

    @Option(help: "Local SGD steps H per gossip round.")
    var localSteps: Int = 1

    @Option(help: "Local epochs E per round instead of --local-steps: each client runs ⌈E·n_k/batch⌉ steps.")
    var localEpochs: Double?

    @Option(name: .customLong("lr"), help: "Base learning rate η.")
    var learningRate: Double = 0.05

    @Option(
        help:
            "Learning-rate schedule: constant, step:EVERY:FACTOR, multistep:M1,M2,…:FACTOR (× FACTOR at each milestone, as PyTorch's MultiStepLR) or cosine[:MINIMUM] (to the end of the run); lengths in --lr-schedule-unit. (default: constant)",
        transform: { try ScheduleShape(parsing: $0) })
    var lrSchedule: ScheduleShape = .constant

    @Option(
        help:
            "What the schedule's lengths and milestones (and --warmup) count: steps (each worker's optimizer steps; round r's steps are r·S … r·S+S−1 for S steps per round) or rounds (the rate is constant within a round)."
    )
    var lrScheduleUnit: ScheduleUnit = .steps

    @Option(
        name: [.customLong("warmup"), .customLong("warmup-steps")],
        help: "Linear warm-up over this many steps or rounds (--lr-schedule-unit; 0: none).")
    var warmupSteps: Int = 0

    @Option(help: "Momentum coefficient (0: plain SGD).")
    var momentum: Double = 0

    @Flag(help: "Nesterov momentum instead of heavy ball.")
    var nesterov = false

    @Option(help: "Weight decay coefficient.")
    var weightDecay: Double = 0

    @Option(help: "Weight decay mode: coupled (L2 in the gradient) or decoupled (SGDW).")
    var weightDecayMode: WeightDecayMode = .coupled

    @Option(help: "Clip each gradient to this global L2 norm (default: no clipping).")
    var clipNorm: Double?

    @Option(
        help:
            "Large-batch regime: the reference (small) total batch B_S that --lr-scaling and --regime-adaptation compare batch × workers against."
    )
    var referenceBatch: Int?

    @Option(help: "Learning-rate scaling by B_L/B_S against --reference-batch: none, linear or sqrt.")
    var lrScaling: LargeBatchSettings.Scaling = .none

    @Flag(
        help:
            "Regime adaptation (\"train longer\"): multiply the rounds and the schedule's step counts by ⌈B_L/B_S⌉ (needs --reference-batch)."
    )
    var regimeAdaptation = false
}

struct BatchNormOptions: ParsableArguments {
    @Option(
        help:
            "Ghost batch norm: normalise each worker's batch in ghost batches of this many rows (must divide --batch; default: the whole batch)."
    )
    var virtualBatchSize: Int?

    @Option(
        help:
            "Batch-norm running statistics with ghost batches: sequential (one update per ghost, as the paper's code) or averaged (one update from the mean ghost statistics, as Keras)."
    )
    var runningStats: RunningStatisticsRule = .sequential

    @Option(help: "Batch-norm momentum m: running ← (1 − m)·running + m·batch (PyTorch convention).")
    var bnMomentum: Double = 0.1

    @Option(
        help: "Batch-norm running statistics across workers: averaged (gossiped like parameters) or local (never sent)."
    )
    var bnPolicy: BatchNormSettings.Policy = .averaged

    @Option(
        help:
            "Evaluate x̄ with the averaged running statistics, or recomputed for x̄'s weights on --bn-recompute-examples training examples."
    )
    var averageModelBn: BatchNormSettings.AverageModelStatistics = .averaged

    @Option(help: "Training examples for --average-model-bn recomputed.")
    var bnRecomputeExamples: Int = 4_096
}

struct PersonalizationOptions: ParsableArguments {
    @Option(
        help:
            "Federated mode with the coordinator as the server: fedavg or fedprox (workers then talk only to the server)."
    )
    var federated: FederatedAlgorithm?

    @Option(help: "Federated: fraction of the clients sampled each round (seeded).")
    var clientFraction: Double = 1

    @Option(help: "FedProx: the proximal coefficient μ.")
    var proximalMu: Double = 0.01

    @Option(
        help:
            "Federated: what a client's momentum trace does between the rounds it trains in: reset (a fresh local optimizer each round) or keep (one optimizer per client across rounds). Default: reset."
    )
    var clientMomentum: ClientMomentum?

    @Option(
        help:
            "Personalization algorithm: \(PersonalizationSettings.Algorithm.allCases.map(\.rawValue).joined(separator: ", ")). fedper and fedrep keep the last layer as the personal head, fedbn the batch-norm layers; local-only needs --topology solo."
    )
    var personalization: PersonalizationSettings.Algorithm = .none

    @Option(
        help:
            "Personalization over gossip: parameter slices (or prefixes, e.g. layers.4) that stay on each worker, comma-separated."
    )
    var personalLayers: String = ""

    @Flag(
        help: "Keep the output layer personal (FedPer over gossip): shorthand for --personal-layers of the last layer.")
    var personalHead = false

    @Option(
        help:
            "Evaluate each worker's own model on a test split of this many examples drawn from its own label distribution (0: off)."
    )
    var clientTestSize: Int = 0

    @Option(
        help:
            "Set aside this fraction of each worker's training examples (⌈f·n⌉, seeded; never trained on) and score its own model on them with its test split: a validation split for choosing hyperparameters (0: off; needs --client-test-size)."
    )
    var clientValidationFraction: Double = 0

    @Option(help: "fine-tune: local steps on the client's own data before each evaluation.")
    var fineTuneSteps: Int = 20

    @Option(help: "fine-tune: the constant learning rate of those steps (default: the base rate --lr).")
    var fineTuneLr: Double?

    @Option(help: "fedrep: head steps per round (body frozen) before the body's local steps.")
    var headSteps: Int = 10

    @Option(help: "ditto: λ of the personal model's pull (λ/2)‖v − w‖² towards the shared model.")
    var dittoLambda: Double = 0.1

    @Option(help: "apfl: the initial mixture weight α.")
    var apflAlpha: Double = 0.5

    @Option(help: "apfl: α's learning rate.")
    var apflAlphaLr: Double = 0.01

    @Option(help: "additive: λ of −λ·‖local − global‖², which pushes the two parts apart.")
    var additiveLambda: Double = 0.001

    @Option(help: "additive: μ of μ·‖global‖₁ (a proximal step), which makes the shared part sparse.")
    var additiveMu: Double = 0.0001

    @Option(help: "additive: the curriculum on λ and μ: tanh (λ_t = tanh(t/T)·λ) or fixed.")
    var curriculum: PersonalizationSettings.Curriculum = .tanh

    @Option(help: "additive: the curriculum's time constant T in rounds.")
    var curriculumRounds: Double = 10

    @Option(
        help:
            "additive: comma-separated slices (or layer prefixes such as layers.0) that get a local part (default: all)."
    )
    var additiveLayers: String = ""
}

struct DiagnosticsOptions: ParsableArguments {
    @Option(help: "Gather parameters and compute the consensus distance every k rounds.")
    var metricsEvery: Int = 1

    @Option(help: "Evaluate x̄ and the workers on the test set every k rounds (and after the last).")
    var evalEvery: Int = 100

    @Flag(help: "Do not evaluate each worker's own model (only x̄).")
    var noEvalWorkers = false

    @Option(help: "Evaluate each worker's own model on a fixed seeded subset of this many test examples (0: all).")
    var workerEvalSize: Int = 1_000

    @Option(help: "Measure curvature and sharpness of x̄ every k rounds and after the last (0: off).")
    var sharpnessEvery: Int = 500

    @Option(
        help: "Training examples (a fixed seeded subset) that curvature, sharpness and x̄'s train loss are measured on.")
    var sharpnessExamples: Int = 256

    @Option(help: "Also measure these workers' own models, e.g. 0,3.")
    var sharpnessWorkers: String = ""

    @Option(
        help:
            "The most Lanczos iterations for the top Hessian eigenvalues (it stops earlier once they converge to --eigen-tolerance)."
    )
    var lanczosIterations: Int = 50

    @Option(
        help:
            "Convergence of the reported eigenvalues: Lanczos residual bound ≤ this × the spectral radius (each record says whether it was met)."
    )
    var eigenTolerance: Double = 1e-3

    @Option(help: "The most Lanczos iterations for each layer's λ_max.")
    var perLayerLanczosIterations: Int = 20

    @Option(help: "Hutchinson probes for the Hessian trace (Hutch++ uses as many products).")
    var hutchinsonProbes: Int = 4

    @Flag(help: "Skip the per-layer top eigenvalue and trace.")
    var noPerLayerCurvature = false

    @Option(help: "SAM radius ρ (also for ASAM and m-sharpness).")
    var samRadius: Double = 0.05

    @Option(help: "σ of the Gaussian average sharpness.")
    var gaussianSigma: Double = 0.01

    @Option(help: "Samples for the Gaussian and average-direction sharpness.")
    var perturbationSamples: Int = 8

    @Option(help: "With batch norm, measure sharpness on the training loss (batch statistics) or the inference loss.")
    var sharpnessBn: BatchNormLoss = .training

    func sharpnessSettings() throws -> SharpnessSettings {
        var settings = SharpnessSettings()
        settings.every = sharpnessEvery
        settings.examples = sharpnessExamples
        settings.lanczosIterations = lanczosIterations
        settings.eigenTolerance = eigenTolerance
        settings.perLayerIterations = perLayerLanczosIterations
        settings.hutchinsonProbes = hutchinsonProbes
        settings.perLayer = !noPerLayerCurvature
        settings.samRadius = samRadius
        settings.gaussianSigma = gaussianSigma
        settings.perturbationSamples = perturbationSamples
        settings.batchNormLoss = sharpnessBn
        settings.workers = try sharpnessWorkers.split(separator: ",").map { text in
            guard let worker = Int(text.trimmingCharacters(in: .whitespaces)) else {
                throw ValidationError("--sharpness-workers: '\(text)' is not a worker number")
            }
            return worker
        }
        return settings
    }
}

struct FaultOptions: ParsableArguments {
    @Option(help: "When a worker stops responding: abort (flush the report, stop everything) or continue without it.")
    var onFailure: FailurePolicy = .abort

    @Option(
        help:
            "Seconds without a heartbeat after which a worker (or, for the workers, the coordinator) is declared dead.")
    var failureTimeout: Double = 5

    @Option(help: "Seconds between heartbeats.")
    var heartbeatInterval: Double = 0.5

    @Option(help: "Seconds of silence after which a peer is declared dead.")
    var peerTimeout: Double = 60

    @Option(help: "Flow control: rounds a worker may run ahead of the coordinator's records.")
    var maxRoundsAhead: Int = 8

    @Option(
        help:
            "Fault injection: worker W sleeps SECONDS before its local steps (in rounds FROM-TO). Repeatable: W:SECONDS[:FROM-TO]."
    )
    var straggler: [String] = []

    @Option(
        help: "Fault injection: the link U–V is absent in rounds FROM-TO (weights recomputed). Repeatable: U:V:FROM-TO."
    )
    var dropLink: [String] = []

    @Option(
        help:
            "Fault injection: models from U to V arrive SECONDS late in rounds FROM-TO. Repeatable: U:V:SECONDS:FROM-TO."
    )
    var delayLink: [String] = []

    @Option(help: "Fault injection: worker W kills itself (SIGKILL) before round R. Repeatable: W:R.")
    var killWorker: [String] = []
}

struct RunFolderOptions: ParsableArguments {
    @Option(
        help:
            "Repeat a run: take every run setting from its config.json (other run flags are ignored; --run-dir still applies)."
    )
    var config: String?

    @Flag(help: "Replace the report already in --run-dir (otherwise that is an error).")
    var overwrite = false

    @Option(help: "Run folder (default runs/<time>-<topology>-n<workers>).")
    var runDir: String?

    @Option(
        help:
            "Write a checkpoint every K rounds (0: never). Default: every 1,000 rounds or about every 10 minutes of wall time, whichever comes first."
    )
    var checkpointEvery: Int?

    @Flag(
        help:
            "Continue the run in --run-dir from its newest complete checkpoint (the run flags must give the same configuration; rows after the checkpoint are dropped)."
    )
    var resume = false
}

extension WeightDecayMode: ExpressibleByArgument {}
extension ClientMomentum: ExpressibleByArgument {}
extension ScheduleUnit: ExpressibleByArgument {}
extension WeightRule: ExpressibleByArgument {}
extension RunningStatisticsRule: ExpressibleByArgument {}
extension PersonalizationSettings.Algorithm: ExpressibleByArgument {}
extension PersonalizationSettings.Curriculum: ExpressibleByArgument {}
extension BatchNormSettings.Policy: ExpressibleByArgument {}
extension BatchNormSettings.AverageModelStatistics: ExpressibleByArgument {}
extension BatchNormLoss: ExpressibleByArgument {}
extension LargeBatchSettings.Scaling: ExpressibleByArgument {}
extension FailurePolicy: ExpressibleByArgument {}

enum FederatedAlgorithm: String, ExpressibleByArgument {
    case fedavg
    case fedprox
}
extension GossipAlgorithm: ExpressibleByArgument {}

/// Logs to standard error, one line each.
func logLine(_ message: String) {
    writeStandardError(message + "\n")
}

/// Writes to standard error, never crashing: a closed pipe or a full disk behind a redirected log
/// loses the line, not the run (FileHandle's non-throwing `write` traps on such errors).
func writeStandardError(_ text: String) {
    try? FileHandle.standardError.write(contentsOf: Data(text.utf8))
}

func gitCommit() -> String {
    if let fromEnvironment = ProcessInfo.processInfo.environment["DSGD_GIT_COMMIT"], !fromEnvironment.isEmpty {
        return fromEnvironment
    }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["git", "rev-parse", "HEAD"]
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = FileHandle.nullDevice
    do {
        try process.run()
        process.waitUntilExit()
    } catch {
        return "unknown"
    }
    let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    return process.terminationStatus == 0 ? text.trimmingCharacters(in: .whitespacesAndNewlines) : "unknown"
}

/// Everything a run needs before it starts, but the training data (`TrainingSide`).
struct PreparedRun {
    /// The checked configuration.
    var configuration: RunConfiguration
    /// The run folder, with `config.json` written.
    var directory: URL
    var testSet: Dataset
    var data: DataDescription
    var report: RunReport
    var spectralGap: Double
    /// A resumed run: the checkpoint it continues from.
    var resume: CheckpointStore.Loaded?

    /// Gives the machine the checkpoint's state and the shell the records before it.
    func resume(_ machine: inout CoordinatorMachine) throws {
        guard let resume else { return }
        do { try machine.resume(from: resume.snapshot) } catch {
            throw ValidationError("--resume: \(resume.url.path): \(error)")
        }
    }

    var resumePoint: ResumePoint? {
        resume.map {
            ResumePoint(
                snapshot: $0.snapshot, records: report.resumedRecords, sharpness: report.resumedSharpness,
                event: "resumed after round \($0.snapshot.round) from \($0.url.lastPathComponent)")
        }
    }

    func resume(_ shell: CoordinatorShell) {
        guard let resume else { return }
        shell.resume(
            records: report.resumedRecords, sharpness: report.resumedSharpness,
            event: "resumed after round \(resume.snapshot.round) from \(resume.url.lastPathComponent)")
    }
}

/// What the coordinator measures x̄ on from the training split; loaded apart from `PreparedRun`
/// so a coordinator can let its workers start while it reads (on a cold cache, inflates) the
/// training set.
struct TrainingSide {
    /// The fixed training subset x̄'s train loss and sharpness are measured on.
    var trainSubset: Dataset
    var sharpness: SharpnessRunner?
    /// Training examples x̄'s batch-norm statistics are recomputed on (nil unless asked for).
    var statisticsSet: Dataset?
}

/// Prepares a run: configuration, run folder, evaluation data.
func prepareRun(_ options: RunOptions) throws -> PreparedRun {
    let (configuration, directory) = try options.makeConfiguration()
    let (testSet, data) = try prepareEvaluation(configuration)
    if options.folder.resume {
        let loaded: CheckpointStore.Loaded
        do {
            loaded = try CheckpointStore(runDirectory: directory).loadNewest(log: logLine)
        } catch { throw ValidationError("--resume: \(error)") }
        let differences = try CheckpointStore.differences(checkpoint: loaded.configuration, resumed: configuration)
        guard differences.isEmpty else {
            throw ValidationError(
                "--resume: \(loaded.url.path) is of another configuration: \(differences.joined(separator: "; "))")
        }
        let report: RunReport
        do { report = try RunReport(resuming: directory, afterRound: loaded.snapshot.round) } catch {
            throw ValidationError("--resume: \(error)")
        }
        logLine(
            "resume: continuing \(directory.path) after round \(loaded.snapshot.round) (\(loaded.url.lastPathComponent))"
        )
        return PreparedRun(
            configuration: configuration, directory: directory, testSet: testSet, data: data, report: report,
            spectralGap: ScheduleSpectrum(configuration.topology).product.spectralGap, resume: loaded)
    }
    let report = try RunReport(directory: directory, overwrite: options.overwrite)
    let spectrum = ScheduleSpectrum(configuration.topology)
    if configuration.federated == nil, let target = configuration.topology.consensusTarget, target.isBiased {
        writeStandardError("warning: --topology \(configuration.topology.name): \(target.description)\n")
    }
    try report.writeManifest(
        RunManifest(
            configuration: configuration, data: data, gitCommit: gitCommit(),
            createdAt: ISO8601DateFormatter().string(from: Date()), command: CommandLine.arguments,
            openBLASCore: BLAS.coreName, topologySpectrum: spectrum))
    return PreparedRun(
        configuration: configuration, directory: directory, testSet: testSet, data: data, report: report,
        spectralGap: spectrum.product.spectralGap)
}

/// Loads the training subset x̄ is measured on and starts the sharpness thread.
/// - Parameter copies: where the sharpness runner gives back its jobs' model copies (the
///   coordinator machine's `modelCopies`).
func loadTrainingSide(_ configuration: RunConfiguration, modelCopies copies: ModelCopies? = nil) throws
    -> TrainingSide
{
    let trainSubset = try DataLoader.loadTrainSubset(
        configuration.data, count: configuration.sharpness.examples, seed: configuration.seed)
    let sharpness =
        configuration.sharpness.every > 0
        ? SharpnessRunner(
            network: Network(spec: configuration.model), evaluationSet: trainSubset, settings: configuration.sharpness,
            seed: configuration.seed,
            trainingGroupSize: configuration.batchNorm.virtualBatchSize ?? configuration.batchSize,
            optimizer: configuration.optimizer, returningModelsTo: copies) : nil
    let recomputes = configuration.model.batchNorm && configuration.batchNorm.averageModelStatistics == .recomputed
    return TrainingSide(
        trainSubset: trainSubset, sharpness: sharpness,
        statisticsSet: recomputes
            ? try DataLoader.loadTrainSubset(
                configuration.data, count: configuration.batchNorm.recomputeExamples, seed: configuration.seed) : nil)
}

/// Loads the test set and describes the data for the reports.
func prepareEvaluation(_ configuration: RunConfiguration) throws -> (Dataset, DataDescription) {
    let test = try DataLoader.loadTestSet(configuration.data)
    let model = configuration.model
    guard test.featureCount == model.inputWidth else {
        throw ValidationError(
            "--model \(model) takes \(model.inputWidth) inputs but --data \(configuration.data) has \(test.featureCount) features per example"
        )
    }
    guard test.classCount <= model.classCount else {
        throw ValidationError(
            "--model \(model) has \(model.classCount) outputs but --data \(configuration.data) has \(test.classCount) classes"
        )
    }
    let (trainLabels, classCount) = try DataLoader.trainLabels(configuration.data)
    let trainCount = trainLabels.count
    do {
        _ = try configuration.partition.assign(
            labels: trainLabels, classCount: classCount, workers: configuration.workers, seed: configuration.seed)
    } catch {
        throw ValidationError(
            "--partition \(configuration.partition) with --workers \(configuration.workers): \(error)")
    }
    return (test, DataLoader.describe(configuration.data, trainCount: trainCount, test: test))
}

/// Resolves a topology argument: a generator name, a schedule name, or a topology file.
func loadSchedule(_ spec: String, nodeCount: Int, seed: UInt64, weights: WeightRule?, flag: String) throws
    -> TopologySchedule
{
    do {
        if let generator = GraphGenerator(parsing: spec) {
            return .fixed(try Topology.generated(generator, nodeCount: nodeCount, seed: seed, weights: weights))
        }
        if let schedule = try TopologySchedule.parse(spec, nodeCount: nodeCount, seed: seed) { return schedule }
    } catch {
        throw ValidationError("\(flag): \(spec): \(error)")
    }
    guard let data = FileManager.default.contents(atPath: spec) else {
        throw ValidationError(
            "\(flag): '\(spec)' is not a generator (\(GraphGenerator.names.joined(separator: ", "))), a schedule (\(TopologySchedule.names.joined(separator: ", "))) or a readable file"
        )
    }
    if weights != nil {
        throw ValidationError("--weights applies to generated topologies; a file states its own weights")
    }
    do {
        return try TopologyFile.parseSchedule(String(decoding: data, as: UTF8.self), name: spec)
    } catch {
        throw ValidationError("\(flag): \(error)")
    }
}
