import Algorithms
import ArgumentParser
import Datasets
import Foundation
import LearningCore
import Optimizers
import Reports
import Runtime
import Transport
import ZeroMQTransport

/// `dsgd bench`: throughput figures, each reported next to a baseline measured in the same run.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract:
            "Measure step throughput vs bare GEMMs, transport vs memcpy, cluster rounds/s vs the CPU ceiling, memory, and the curvature engine."
    )

    @Option(help: "Rounds of each cluster run in part (c).")
    var rounds: Int = 300

    @Option(help: "Workers in part (c).")
    var workers: Int = 8

    @Option(
        help:
            "Part (c): runs of each configuration (the configurations alternate; rounds/s are their medians, memory their worst; the gloo baseline as many times)."
    )
    var clusterRepeats: Int = 1

    @Option(help: "Data for part (c): auto, synthetic or a folder of IDX files.")
    var data: String = "auto"

    @Option(
        help:
            "The cluster runs' messages: ipc (Unix-domain sockets, as launch/local.sh by default) or tcp (127.0.0.1).")
    var transport: String = "ipc"

    @Option(help: "Seconds per throughput sample in parts (a) and (b).")
    var sampleSeconds: Double = 1

    @Flag(help: "Skip part (c) and (d) (the multi-process cluster runs).")
    var skipCluster = false

    @Option(help: "Rounds of each run in part (e), the cost of diagnostics.")
    var diagnosticsRounds: Int = 1_000

    @Option(
        help:
            "Part (e): runs of each configuration (the three alternate; times are their medians, the costs the medians of each repeat's own ratios, with their range)."
    )
    var diagnosticsRepeats: Int = 1

    @Flag(help: "Skip part (e).")
    var skipDiagnostics = false

    @Flag(help: "Skip part (f), the CNN and ghost batch norm.")
    var skipCNN = false

    @Flag(help: "Run only part (f).")
    var onlyCNN = false

    @Flag(help: "Skip part (g), the curvature engine.")
    var skipCurvature = false

    @Flag(help: "Run only part (g).")
    var onlyCurvature = false

    @Option(help: "Part (g): SGD steps (batch 32, η 0.05) before the curvature is measured.")
    var curvatureTrainingSteps: Int = 300

    @Option(help: "Part (g): the first this many training images make the loss.")
    var curvatureExamples: Int = 1_000

    @Option(help: "Part (g): timed repetitions of each long operation (×3 for gradient and product).")
    var curvatureRepeats: Int = 3

    @Option(help: "Part (g): write the measured parameters (flat Float32) to this file.")
    var saveCurvatureModel: String?

    @Option(
        help:
            "Part (c): a Python with torch; runs the gloo baseline (--gloo-script) on the same workload, ring and complete, in the same run."
    )
    var gloo: String?

    @Option(help: "Part (c): the torch.distributed (gloo) script run by --gloo.")
    var glooScript: String = "bench/gloo_gossip.py"

    @Option(help: "Part (g): a Python with torch and pyhessian; runs the PyHessian side in the same run.")
    var pyhessian: String?

    @Option(help: "Part (g): the PyHessian script run by --pyhessian.")
    var pyhessianScript: String = "bench/pyhessian_bench.py"

    @Option(help: "Part (g) with --pyhessian: alternated passes of the two tools (each keeps its best).")
    var comparisonPasses: Int = 2

    @Flag(
        help:
            "Run only part (i), many workers on this machine: --many-workers workers on --many-model, one process per worker against --many-per-process workers to a process, alternated --many-repeats times."
    )
    var manyWorkers = false

    @Option(help: "Part (i): workers.")
    var manyCount: Int = 256

    @Option(help: "Part (i): workers to a process in the grouped runs (default: half the workers, two processes).")
    var manyPerProcess: Int?

    @Option(help: "Part (i): rounds of each run.")
    var manyRounds: Int = 200

    @Option(help: "Part (i): the model.")
    var manyModel: String = "784-32-10"

    @Option(help: "Part (i): how many times the two launches alternate.")
    var manyRepeats: Int = 2

    @Flag(help: "Run only part (h), the soak: --soak-workers workers, --soak-rounds rounds, memory sampled.")
    var soak = false

    @Option(help: "Part (h): rounds of the soak run.")
    var soakRounds: Int = 5_000

    @Option(help: "Part (h): workers of the soak run.")
    var soakWorkers: Int = 16

    @Option(help: "Part (h): the soak run's model.")
    var soakModel: String = "784-64-10"

    func validate() throws {
        guard transport == "ipc" || transport == "tcp" else {
            throw ValidationError("--transport must be ipc or tcp, got '\(transport)'")
        }
        guard clusterRepeats >= 1 else { throw ValidationError("--cluster-repeats must be at least 1") }
        guard diagnosticsRepeats >= 1 else { throw ValidationError("--diagnostics-repeats must be at least 1") }
    }

    func run() throws {
        BLAS.useSingleThread()
        print(
            "dsgd bench — OpenBLAS core \(BLAS.coreName), OPENBLAS_NUM_THREADS=\(ProcessInfo.processInfo.environment["OPENBLAS_NUM_THREADS"] ?? "unset")"
        )
        if soak { return try benchSoak() }
        if manyWorkers { return try benchManyWorkers() }
        if onlyCNN { return try benchCNN() }
        if onlyCurvature { return try benchCurvature() }
        let stepsPerSecond = try benchTrainingStep()
        try benchTransfer()
        if !skipCluster { try benchCluster(stepsPerSecond: stepsPerSecond) }
        if !skipDiagnostics { try benchDiagnostics() }
        if !skipCNN { try benchCNN() }
        if !skipCurvature { try benchCurvature() }
    }

    /// (f) The CNN's training throughput and the share of its step spent in GEMM; ghost batch norm
    /// against plain batch norm at the same batch, in the same run.
    private func benchCNN() throws {
        let network = Network(spec: try ModelSpec(parsing: "cnn"))
        let shard = SyntheticClassification(featureCount: 784, trainCount: 2_048, testCount: 1).examples(
            Array(0..<2_048))
        func trainer(batch: Int, ghost: Int?) -> (LocalTrainer, [Float]) {
            (
                LocalTrainer(
                    network: network, shard: shard, batchSize: batch, localSteps: 1,
                    optimizer: OptimizerSettings(schedule: .constant(0.01), momentumKind: .heavyBall, momentum: 0.9),
                    seed: 1, rank: 0, batchNorm: BatchNormSettings(virtualBatchSize: ghost)),
                network.initialParameters(seed: 1)
            )
        }
        print("\n(f) CNN \(network.spec) (\(network.parameterCount) values), one thread, SGD with momentum")
        for batch in [16, 128, 512] {
            var (stepper, parameters) = trainer(batch: batch, ghost: nil)
            let steps = rate { _ = stepper.train(&parameters, round: nil) }
            let timer = BLAS.GemmTimer()
            BLAS.gemmTimer = timer
            let clock = ContinuousClock()
            let start = clock.now
            for _ in 0..<max(3, Int(steps * sampleSeconds)) { _ = stepper.train(&parameters, round: nil) }
            let total = clock.now - start
            BLAS.gemmTimer = nil
            print(
                String(
                    format: "    batch %4d: %8.0f samples/s (%.2f ms/step); GEMM %.0f%% of the step (%d calls/step)",
                    batch, steps * Double(batch), 1000 / steps, 100 * (timer.elapsed / total),
                    timer.calls / max(3, Int(steps * sampleSeconds))))
        }
        for (batch, ghost) in [(512, 128), (512, 16), (128, 16)] {
            var (plain, plainParameters) = trainer(batch: batch, ghost: nil)
            var (ghosted, ghostParameters) = trainer(batch: batch, ghost: ghost)
            // Interleaved samples, best of each, so drift in the machine's speed hits both alike.
            let plainRate = rate { _ = plain.train(&plainParameters, round: nil) }
            let ghostRate = rate { _ = ghosted.train(&ghostParameters, round: nil) }
            print(
                String(
                    format: "    batch %4d, ghost batches of %3d vs plain batch norm: step time ×%.3f   (target ≤ 1.2)",
                    batch, ghost, plainRate / ghostRate))
        }
    }

    /// (e) Run time with diagnostics off, with the consensus distance only, and with the default
    /// schedule (Ξ² every round, evaluation every 100 rounds, sharpness every 500), as ratios. With
    /// repeats the three configurations alternate, so a drift in the machine's speed reaches all
    /// three; each cost is the median of the repeats' own ratios.
    private func benchDiagnostics() throws {
        print(
            "\n(e) cost of the diagnostics: \(workers)-worker ring, default workload, \(diagnosticsRounds) rounds, data \(data), \(transport)"
                + (diagnosticsRepeats > 1 ? ", median of \(diagnosticsRepeats) alternated runs each" : "")
        )
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent(
            "dsgd-bench-diagnostics-\(getpid())")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let never = "\(diagnosticsRounds)"
        let cases: [(String, [String])] = [
            (
                "off (x̄ evaluated once, at the end)",
                ["--metrics-every", never, "--eval-every", never, "--sharpness-every", "0", "--no-eval-workers"]
            ),
            (
                "consensus distance every round",
                ["--metrics-every", "1", "--eval-every", never, "--sharpness-every", "0", "--no-eval-workers"]
            ),
            ("default (Ξ² every round, eval every 100, sharpness every 500)", []),
        ]
        // times[repeat][case], and the coordinator's rounds/s likewise.
        var times: [[Double]] = []
        var rates: [[Double]] = []
        for repeat_ in 0..<diagnosticsRepeats {
            var repeatTimes: [Double] = []
            var repeatRates: [Double] = []
            for (index, (_, arguments)) in cases.enumerated() {
                let started = Date()
                let summary = try launchCluster(
                    runDirectory: scratch.appendingPathComponent("case-\(index)-\(repeat_)"), metricsEvery: nil,
                    rounds: diagnosticsRounds,
                    extra: arguments)
                guard summary.status == "completed" else {
                    throw ValidationError("bench: run failed: \(summary.reason ?? "?")")
                }
                repeatTimes.append(Date().timeIntervalSince(started))
                repeatRates.append(summary.roundsPerSecond)
            }
            times.append(repeatTimes)
            rates.append(repeatRates)
        }
        let medianTimes = cases.indices.map { index in median(times.map { $0[index] }) }
        for (index, (label, _)) in cases.enumerated() {
            let runs =
                diagnosticsRepeats > 1
                ? "   runs " + times.map { String(format: "%.2f", $0[index]) }.joined(separator: ", ") : ""
            print(
                String(
                    format: "    %@ %7.2f s   ×%.3f   (%.1f rounds/s in the coordinator's clock)%@",
                    label.padding(toLength: 62, withPad: " ", startingAt: 0), medianTimes[index],
                    medianTimes[index] / medianTimes[0], median(rates.map { $0[index] }), runs))
        }
        /// The median of each repeat's cost of `case_` over `baseline`, in percent, and their range.
        func cost(_ case_: Int, over baseline: Int) -> String {
            let ratios = times.map { 100 * ($0[case_] / $0[baseline] - 1) }
            let range =
                ratios.count > 1 ? String(format: " (runs %+.1f to %+.1f%%)", ratios.min()!, ratios.max()!) : ""
            return String(format: "%+.1f%%", median(ratios)) + range
        }
        print("    default diagnostics vs off: \(cost(2, over: 0)) run time")
        print("    consensus distance every round vs off: \(cost(1, over: 0)) run time")
        print(
            "    evaluation and sharpness on top of the consensus distance: \(cost(2, over: 1)) run time (target ≤ 15%)"
        )
    }

    /// Best rate (iterations per second) over 3 samples of about `sampleSeconds` each.
    private func rate(_ body: () -> Void) -> Double {
        let clock = ContinuousClock()
        var best = 0.0
        for _ in 0..<3 {
            var iterations = 0
            let start = clock.now
            var elapsed = 0.0
            repeat {
                body()
                iterations += 1
                elapsed = (clock.now - start) / .seconds(1)
            } while elapsed < sampleSeconds
            best = max(best, Double(iterations) / elapsed)
        }
        return best
    }

    /// (a) One SGD step of 784-256-256-10 at batch 32 against the bare SGEMMs of the same shapes.
    private func benchTrainingStep() throws -> Double {
        let network = Network(spec: try ModelSpec(parsing: "784-256-256-10"))
        let batch = 32
        let shard = SyntheticClassification(trainCount: 1024, testCount: 1).examples(Array(0..<1024))
        var sampler = ShardSampler(shard: shard, seed: 1, rank: 0)
        let workspace = NetworkWorkspace(network: network, capacity: batch)
        var parameters = network.initialParameters(seed: 1)
        var gradient = [Float](repeating: 0, count: network.parameterCount)
        var optimizer = Optimizer(
            settings: OptimizerSettings(schedule: .constant(0.01)), parameterCount: network.parameterCount)
        let steps = rate {
            sampler.fillNextBatch(workspace, batchSize: batch)
            parameters.withUnsafeBufferPointer { p in
                gradient.withUnsafeMutableBufferPointer { g in
                    _ = workspace.lossAndGradient(
                        parameters: p.baseAddress!, gradient: g.baseAddress!, batchSize: batch)
                }
            }
            optimizer.apply(gradient: &gradient, to: &parameters)
        }
        // The GEMMs of one step: forward X·Wᵀ per layer, weight gradients dYᵀ·X per layer, and
        // input gradients dY·W for every layer but the first.
        let widths = network.spec.widths
        var shapes: [(Bool, Bool, Int, Int, Int)] = []
        for l in 0..<(widths.count - 1) { shapes.append((false, true, batch, widths[l + 1], widths[l])) }
        for l in 0..<(widths.count - 1) { shapes.append((true, false, widths[l + 1], widths[l], batch)) }
        for l in 1..<(widths.count - 1) { shapes.append((false, false, batch, widths[l], widths[l + 1])) }
        let largest = widths.max()! * widths.max()!
        let a = [Float](repeating: 0.01, count: largest)
        let b = [Float](repeating: 0.02, count: largest)
        var c = [Float](repeating: 0, count: largest)
        let gemms = rate {
            a.withUnsafeBufferPointer { ap in
                b.withUnsafeBufferPointer { bp in
                    c.withUnsafeMutableBufferPointer { cp in
                        for (ta, tb, m, n, k) in shapes {
                            BLAS.gemm(
                                transposeA: ta, transposeB: tb, m: m, n: n, k: k, alpha: 1, a: ap.baseAddress!,
                                lda: ta ? m : k,
                                b: bp.baseAddress!, ldb: tb ? k : n, beta: 0, c: cp.baseAddress!, ldc: n)
                        }
                    }
                }
            }
        }
        print("\n(a) training step, MLP 784-256-256-10, batch 32, one thread")
        print(
            String(
                format: "    full step (batch fill + forward + backward + SGD): %8.1f steps/s  (%.3f ms)", steps,
                1000 / steps))
        print(
            String(
                format: "    bare SGEMMs of the same shapes (%d calls):         %8.1f sets/s   (%.3f ms)", shapes.count,
                gemms, 1000 / gemms))
        print(String(format: "    step time / GEMM time: %.2f   (target ≤ 1.5)", gemms / steps))
        return steps
    }

    /// (b) Parameter transfer between two processes through `ZeroMQTransport`, against memcpy.
    private func benchTransfer() throws {
        print("\n(b) parameter transfer between two processes (a fresh snapshot per message, as workers send)")
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("dsgd-bench-\(getpid())")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: scratch) }
        let context = try ZeroMQContext()
        for scheme in ["tcp", "ipc"] {
            for megabytes in [1, 8] {
                let bytes = megabytes << 20
                let bind = scheme == "tcp" ? "tcp://127.0.0.1:*" : "ipc://\(scratch.path)/bench-\(megabytes)"
                let inbox = try ZeroMQTransport(context: context, bindEndpoint: bind)
                let count = max(20, 400 / megabytes)
                let child = Process()
                child.executableURL = URL(fileURLWithPath: CommandLine.arguments[0]).absoluteURL
                child.arguments = [
                    "bench-peer", "--endpoint", inbox.localEndpoint, "--bytes", "\(bytes)", "--count", "\(count + 1)",
                ]
                try child.run()
                let clock = ContinuousClock()
                var received = 0
                var start = clock.now
                while received < count + 1 {
                    guard case .envelope(let envelope) = try inbox.receive(timeoutMilliseconds: 10_000) else {
                        child.terminate()
                        throw ValidationError("bench: transfer over \(scheme) stalled")
                    }
                    if received == 0 { start = clock.now }
                    precondition(envelope.payload?.byteCount == bytes)
                    received += 1
                }
                let seconds = (clock.now - start) / .seconds(1)
                child.waitUntilExit()
                let transfer = Double(count * bytes) / seconds / 1e9
                let source = [UInt8](repeating: 1, count: bytes)
                var destination = [UInt8](repeating: 0, count: bytes)
                let copies = rate {
                    destination.withUnsafeMutableBytes { d in source.withUnsafeBytes { d.copyMemory(from: $0) } }
                }
                let memcpy = copies * Double(bytes) / 1e9
                print(
                    String(
                        format: "    %@ %d MB: %6.2f GB/s   memcpy %6.2f GB/s   ratio %.3f", scheme, megabytes,
                        transfer, memcpy, transfer / memcpy))
            }
        }
    }

    /// `RunFolder.roundsPerSecondAfterWarmUp` of a finished run.
    static func roundsPerSecondAfterWarmUp(_ run: URL) throws -> Double {
        guard let rate = RunFolder.roundsPerSecondAfterWarmUp(try RunFolder.load(run).rounds) else {
            throw ValidationError("bench: \(run.path)/rounds.jsonl lacks the rounds' elapsed times")
        }
        return rate
    }

    /// (c) and (d): rings and complete graphs (C-SGD, an all-reduce) of n and 2n workers on the
    /// default workload, launched as real processes, with models through shared memory and as
    /// ZeroMQ frames, Ξ² every round and every 10th; then the start-up of 16 workers and the
    /// workers' memory.
    private func benchCluster(stepsPerSecond: Double) throws {
        print(
            "\n(c) cluster rounds/s, MLP 784-256-256-10, batch 32 per worker, \(rounds) rounds, data \(data), \(transport)"
                + (clusterRepeats > 1 ? ", median of \(clusterRepeats) alternated runs each" : "")
        )
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("dsgd-bench-cluster-\(getpid())")
        defer { try? FileManager.default.removeItem(at: scratch) }
        var rows: [ClusterRow] = []
        for repeat_ in 0..<clusterRepeats {
            var index = 0
            for topology in ["ring", "complete"] {
                for count in [workers, 2 * workers] {
                    for payloads in ["shared-memory", "zeromq"] {
                        for every in [1, 10] {
                            let run = scratch.appendingPathComponent(
                                "\(topology)-\(count)-\(payloads)-\(every)-\(repeat_)")
                            let summary = try launchCluster(
                                runDirectory: run, metricsEvery: every, rounds: rounds,
                                extra: [
                                    "--topology", topology, "--payloads", payloads, "--eval-every", "\(rounds)",
                                    "--no-eval-workers", "--sharpness-every", "0",
                                ], workers: count)
                            guard summary.status == "completed" else {
                                throw ValidationError("bench: cluster run failed: \(summary.reason ?? "?")")
                            }
                            let timed = try Self.roundsPerSecondAfterWarmUp(run)
                            if repeat_ == 0 {
                                rows.append(
                                    ClusterRow(topology: topology, workers: count, payloads: payloads, every: every))
                            }
                            rows[index].summaries.append(summary)
                            rows[index].timedRuns.append(timed)
                            try? FileManager.default.removeItem(at: run)
                            index += 1
                        }
                    }
                }
            }
        }
        print(
            "    topology   n  payloads        Ξ² every   rounds/s   of the ceiling   Ξ² every round costs   rounds 2…\(rounds - 1) (as gloo is timed)"
        )
        for row in rows {
            let ceiling = 2 * stepsPerSecond / Double(row.workers)
            var cost = ""
            if row.every == 1,
                let tenth = rows.first(where: {
                    $0.topology == row.topology && $0.workers == row.workers && $0.payloads == row.payloads
                        && $0.every == 10
                })
            {
                cost = String(format: "%+.1f%% time", 100 * (tenth.roundsPerSecond / row.roundsPerSecond - 1))
            }
            print(
                String(
                    format: "    %@ %2d  %@ %2d        %7.1f     %5.1f%%          %@   %7.1f (%4.1f%%)",
                    row.topology.padding(toLength: 9, withPad: " ", startingAt: 0), row.workers,
                    row.payloads.padding(toLength: 14, withPad: " ", startingAt: 0), row.every,
                    row.roundsPerSecond, 100 * row.roundsPerSecond / ceiling,
                    cost.padding(toLength: 19, withPad: " ", startingAt: 0), row.timedAsBaseline,
                    100 * row.timedAsBaseline / ceiling))
        }
        if let gloo {
            for topology in ["ring", "complete"] {
                for count in [workers, 2 * workers] {
                    try compareWithGloo(python: gloo, topology: topology, workers: count, rows: rows)
                }
            }
        }
        for topology in ["ring", "complete"] {
            for count in [workers, 2 * workers] {
                let pick = { (payloads: String) in
                    rows.first {
                        $0.topology == topology && $0.workers == count && $0.payloads == payloads && $0.every == 10
                    }!
                    .roundsPerSecond
                }
                print(
                    String(
                        format: "    %@ n = %2d: shared memory ×%.2f the rounds/s of ZeroMQ frames",
                        topology.padding(toLength: 8, withPad: " ", startingAt: 0), count,
                        pick("shared-memory") / pick("zeromq")))
            }
        }
        print(
            String(
                format:
                    "    ceiling 2 × %.1f steps/s ÷ n (both cores only training): %.1f rounds/s at n = %d, %.1f at n = %d"
                    + " (targets: ring ≥ 50%%, complete ≥ 40%% at n = %d; Ξ² every round ≤ +10%%)",
                stepsPerSecond, 2 * stepsPerSecond / Double(workers), workers, stepsPerSecond / Double(workers),
                2 * workers, workers))
        try benchStartup(scratch: scratch)
        print(
            "\n(d) memory per worker: peak resident (RSS: every segment page it maps counted whole), its own"
                + " (peak less those pages), and its own plus its proportional share of the segments (Pss_Shmem:"
                + " a page k processes map counts 1/k; summed over the processes, every page once)")
        for row in rows where row.every == 1 {
            var worst = 0
            var worstOwn = 0
            var worstFootprint = 0
            for summary in row.summaries {
                let peaks = summary.workerPeakResidentBytes ?? []
                let zeros = [Int](repeating: 0, count: peaks.count)
                let shared = summary.workerSharedResidentBytes ?? zeros
                let proportional = summary.workerSharedProportionalBytes ?? zeros
                let own = zip(peaks, shared).map { $0 - $1 }
                let footprint = zip(own, proportional).map { $0 + $1 }
                worst = max(worst, peaks.max() ?? 0)
                worstOwn = max(worstOwn, own.max() ?? 0)
                worstFootprint = max(worstFootprint, footprint.max() ?? 0)
            }
            guard worst > 0 else { continue }
            let mebibytes = { (bytes: Int) in Double(bytes) / 1_048_576 }
            print(
                String(
                    format: "    %@ %2d  %@ peak %6.1f MiB, own %5.1f MiB, own + share %5.1f MiB   (target ≤ 80 MiB)",
                    row.topology.padding(toLength: 9, withPad: " ", startingAt: 0), row.workers,
                    row.payloads.padding(toLength: 14, withPad: " ", startingAt: 0), mebibytes(worst),
                    mebibytes(worstOwn), mebibytes(worstFootprint)))
        }
    }

    /// Runs the gloo baseline on `topology` with `workers` processes and prints dsgd's shared-memory
    /// runs of the same shape against it (the goal: ≥ 4× on rings and complete graphs of n and 2n).
    private func compareWithGloo(python: String, topology: String, workers: Int, rows: [ClusterRow]) throws {
        let theirs = median(
            try (0..<clusterRepeats).map { _ in try runGloo(python: python, topology: topology, workers: workers) })
        let ours = rows.filter { $0.topology == topology && $0.workers == workers && $0.payloads == "shared-memory" }
        let tenth = ours.first { $0.every == 10 }!
        let every = ours.first { $0.every == 1 }!
        print(
            String(
                format:
                    "    %@ n = %2d: torch.distributed (gloo) %.1f rounds/s (no Ξ²); dsgd ×%.2f with Ξ² every 10th round, ×%.2f every round; timed as gloo is ×%.2f and ×%.2f   (goal ≥ 4×)",
                topology.padding(toLength: 8, withPad: " ", startingAt: 0), workers, theirs,
                tenth.roundsPerSecond / theirs, every.roundsPerSecond / theirs,
                tenth.timedAsBaseline / theirs, every.timedAsBaseline / theirs))
    }

    /// Runs `bench/gloo_gossip.py` (the same workload in PyTorch over gloo); returns its rounds/s.
    private func runGloo(python: String, topology: String, workers: Int) throws -> Double {
        let arguments = [glooScript, "--workers", "\(workers)", "--topology", topology, "--rounds", "\(rounds)"]
        let (result, output) = try runPythonBaseline(python: python, arguments: arguments, flag: "--gloo")
        guard let rate = Double(result.trimmingCharacters(in: .whitespaces)) else {
            throw ValidationError(
                "bench --gloo: \(glooScript) printed RESULT \(result), not a rate; its output:\n\(output)")
        }
        return rate
    }

    /// Runs a baseline script with one thread (OMP and MKL) and returns what follows its last
    /// `RESULT ` line, and its whole output; a failure or a missing line is an error naming `flag`.
    func runPythonBaseline(python: String, arguments: [String], flag: String) throws -> (result: String, output: String)
    {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        environment["OMP_NUM_THREADS"] = "1"
        environment["MKL_NUM_THREADS"] = "1"
        process.environment = environment
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0,
            let line = text.split(separator: "\n").last(where: { $0.hasPrefix("RESULT ") })
        else {
            throw ValidationError(
                "bench \(flag): \(arguments.first ?? python) exited with status \(process.terminationStatus) and no RESULT line; its output:\n\(text)"
            )
        }
        return (String(line.dropFirst(7)), text)
    }

    /// Start-up of 16 workers: the coordinator's start to round 1 (`startup_seconds`), first with
    /// an empty IDX cache (the host inflates the data once), then with it warm, then with the cache
    /// off (every process inflates its own copy, as before the cache).
    private func benchStartup(scratch: URL) throws {
        let cache = scratch.appendingPathComponent("idx-cache")
        var figures: [String] = []
        for (label, directory) in [("cold cache", cache.path), ("warm cache", cache.path), ("no cache", "off")] {
            let summary = try launchCluster(
                runDirectory: scratch.appendingPathComponent("startup-\(figures.count)"), metricsEvery: nil,
                rounds: 1, extra: ["--sharpness-every", "0"], workers: 16, environment: ["DSGD_CACHE_DIR": directory])
            guard summary.status == "completed", let seconds = summary.startupSeconds else {
                throw ValidationError("bench: start-up run failed: \(summary.reason ?? "?")")
            }
            figures.append(String(format: "%@ %.2f s", label, seconds))
        }
        print(
            "    start-up, 16 workers, data \(data), coordinator start to round 1: \(figures.joined(separator: ", "))   (target ≤ 1 s)"
        )
    }

    /// (i) Many workers on this machine: `manyCount` workers with the default diagnostics (Ξ² every
    /// round, evaluation every 100), as one process per worker and as groups of `manyPerProcess`
    /// to a process, alternated in the same minutes (this shared machine's speed drifts): rounds/s
    /// of each and their ratio, start-up to round 1, and peak resident memory per process and per
    /// worker (the coordinator's sampled from /proc).
    private func benchManyWorkers() throws {
        let perProcess = manyPerProcess ?? max(1, (manyCount + 1) / 2)
        print(
            "\n(i) many workers: \(manyCount) workers, model \(manyModel), data \(data), \(manyRounds) rounds, default diagnostics but sharpness; one process per worker vs \(perProcess) to a process"
        )
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("dsgd-bench-many-\(getpid())")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let mebibyte = 1_048_576.0
        var rates: [Int: [Double]] = [:]
        for repeat_ in 0..<manyRepeats {
            for group in [1, perProcess] {
                let run = scratch.appendingPathComponent("run-\(group)-\(repeat_)")
                var coordinatorPeak = 0
                let summary = try launchCluster(
                    runDirectory: run, metricsEvery: nil, rounds: manyRounds,
                    extra: ["--model", manyModel, "--sharpness-every", "0"], workers: manyCount,
                    workersPerProcess: group
                ) { processes in
                    coordinatorPeak = max(coordinatorPeak, residentBytes(of: processes[0].processIdentifier) ?? 0)
                }
                guard summary.status == "completed" else {
                    throw ValidationError("bench: the \(group)-to-a-process run failed: \(summary.reason ?? "?")")
                }
                rates[group, default: []].append(summary.roundsPerSecond)
                let peaks = summary.workerPeakResidentBytes ?? []
                let processPeak = Double(peaks.max() ?? 0) / mebibyte
                print(
                    String(
                        format:
                            "    %3d to a process: %6.2f rounds/s, start-up %.2f s; peak per worker process %.1f MiB (%.1f MiB a worker), coordinator %.1f MiB",
                        group, summary.roundsPerSecond, summary.startupSeconds ?? .nan, processPeak,
                        processPeak / Double(group), Double(coordinatorPeak) / mebibyte))
            }
        }
        let single = rates[1] ?? []
        let grouped = rates[perProcess] ?? []
        let ratios = zip(grouped, single).map { $0 / $1 }
        print(
            "    grouped / one per process: "
                + ratios.map { String(format: "×%.2f", $0) }.joined(separator: ", ")
                + "  (target: ≥ 25 rounds/s at 256 workers)")
    }

    /// (h) The soak: `soakWorkers` worker processes for `soakRounds` rounds with the default
    /// diagnostics, the resident memory of every process (from /proc) sampled once the run is
    /// warm (5 % of the rounds), at the middle and near the end (95 %); a per-round leak shows as
    /// growth between the middle and the end, reported per process and per round.
    private func benchSoak() throws {
        let model = soakModel
        print(
            "\n(h) soak: \(soakWorkers) workers, \(soakRounds) rounds, model \(model), data \(data), \(transport), default diagnostics"
        )
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("dsgd-bench-soak-\(getpid())")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let run = scratch.appendingPathComponent("soak")
        let marks = [("start", soakRounds / 20), ("middle", soakRounds / 2), ("end", soakRounds * 19 / 20)]
        var samples: [(name: String, round: Int, resident: [Int])] = []
        let rounds = RoundCounter(file: run.appendingPathComponent("rounds.jsonl"))
        let clock = ContinuousClock()
        let started = clock.now
        let summary = try launchCluster(
            runDirectory: run, metricsEvery: nil, rounds: soakRounds,
            extra: ["--model", model], workers: soakWorkers
        ) { processes in
            let done = rounds.count()
            guard samples.count < marks.count, done >= marks[samples.count].1 else { return }
            let resident = processes.map { residentBytes(of: $0.processIdentifier) ?? 0 }
            samples.append((marks[samples.count].0, done, resident))
        }
        guard summary.status == "completed" else {
            throw ValidationError("bench: the soak run failed: \(summary.reason ?? "?")")
        }
        let seconds = (clock.now - started) / .seconds(1)
        print(
            String(format: "    %d rounds in %.0f s (%.1f rounds/s)", summary.rounds, seconds, summary.roundsPerSecond))
        guard samples.count == marks.count else {
            print("    memory: only \(samples.count) of \(marks.count) samples taken (the run was too short to sample)")
            return
        }
        let names = ["coordinator"] + (0..<soakWorkers).map { "worker \($0)" }
        let mebibyte = 1_048_576.0
        print("    resident memory (MiB) at rounds " + samples.map { "\($0.name) \($0.round)" }.joined(separator: ", "))
        var worstPerRound = 0.0
        var worstName = ""
        for (index, name) in names.enumerated() {
            let values = samples.map { Double($0.resident[index]) }
            let perRound = (values[2] - values[1]) / Double(max(1, samples[2].round - samples[1].round))
            if perRound > worstPerRound {
                worstPerRound = perRound
                worstName = name
            }
            if index == 0 || index <= 2 || index == names.count - 1 {
                print(
                    String(
                        format: "    %@ %7.1f %7.1f %7.1f   middle → end %+7.2f MiB (%+.0f B/round)",
                        name.padding(toLength: 12, withPad: " ", startingAt: 0), values[0] / mebibyte,
                        values[1] / mebibyte, values[2] / mebibyte, (values[2] - values[1]) / mebibyte, perRound))
            } else if index == 3 {
                print("    …")
            }
        }
        let totals = samples.map { Double($0.resident.reduce(0, +)) / mebibyte }
        print(
            String(
                format:
                    "    all %d processes: %.1f → %.1f → %.1f MiB; the largest growth middle → end is %@'s, %+.0f B/round (%+.2f MiB over the second half)",
                names.count, totals[0], totals[1], totals[2], worstName, worstPerRound,
                worstPerRound * Double(samples[2].round - samples[1].round) / mebibyte))
    }

    private func launchCluster(
        runDirectory: URL, metricsEvery: Int?, rounds: Int, extra: [String], workers: Int? = nil,
        workersPerProcess: Int = 1, environment overrides: [String: String] = [:],
        watch: (([Process]) -> Void)? = nil
    ) throws -> RunSummary {
        let workers = workers ?? self.workers
        let binary = URL(fileURLWithPath: CommandLine.arguments[0]).absoluteURL
        let endpointFile = runDirectory.appendingPathComponent("endpoint")
        try FileManager.default.createDirectory(at: runDirectory, withIntermediateDirectories: true)
        var environment = ProcessInfo.processInfo.environment
        environment["OPENBLAS_NUM_THREADS"] = "1"
        environment.merge(overrides) { $1 }
        func start(_ arguments: [String]) throws -> Process {
            let process = Process()
            process.executableURL = binary
            process.arguments = arguments
            process.environment = environment
            process.standardError = FileHandle.nullDevice
            try process.run()
            return process
        }
        let bind = { (name: String) in
            transport == "ipc" ? "ipc://\(runDirectory.path)/\(name)" : "tcp://127.0.0.1:*"
        }
        let coordinator = try start(
            [
                "coordinator", "--workers", "\(workers)", "--rounds", "\(rounds)", "--data", data, "--run-dir",
                runDirectory.path,
                "--endpoint-file", endpointFile.path, "--bind", bind("coordinator"), "--overwrite",
            ] + (metricsEvery.map { ["--metrics-every", "\($0)"] } ?? []) + extra)
        var endpoint = ""
        for _ in 0..<600 where endpoint.isEmpty && coordinator.isRunning {
            endpoint = ((try? String(contentsOf: endpointFile, encoding: .utf8)) ?? "").trimmingCharacters(
                in: .whitespacesAndNewlines)
            usleep(50_000)
        }
        guard !endpoint.isEmpty else { throw ValidationError("bench: the coordinator did not start") }
        let children = try stride(from: 0, to: workers, by: workersPerProcess).map { first in
            try start(
                [
                    "worker", "--coordinator", endpoint, "--bind", bind("worker-\(first)"), "--rank", "\(first)",
                    "--workers-per-process", "\(min(workersPerProcess, workers - first))",
                ])
        }
        if let watch {
            // Polls while the run goes: the watcher sees the processes (coordinator first).
            let processes = [coordinator] + children
            while coordinator.isRunning {
                watch(processes)
                usleep(100_000)
            }
        }
        coordinator.waitUntilExit()
        for child in children { child.waitUntilExit() }
        return try JSONDecoder().decode(
            RunSummary.self, from: Data(contentsOf: runDirectory.appendingPathComponent("summary.json")))
    }
}

/// The far end of part (b): connects to the parent's inbox and sends `count` snapshots.
struct BenchPeerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-peer", abstract: "Internal: the far end of bench's transfer test.", shouldDisplay: false)

    @Option var endpoint: String
    @Option var bytes: Int
    @Option var count: Int

    func run() throws {
        let context = try ZeroMQContext()
        let transport = try ZeroMQTransport(context: context, bindEndpoint: "tcp://127.0.0.1:*")
        try transport.connect(.coordinator, endpoint: endpoint)
        let parameters = [Float](repeating: 0.5, count: bytes / 4)
        for round in 0..<count {
            let payload = FloatPayload(copying: parameters)
            try transport.send(
                Envelope(
                    header: MessageHeader(kind: .parameters, runID: 1, round: Int64(round), sender: 0), payload: payload
                ),
                to: .coordinator)
        }
    }
}

/// Counts the complete lines of a growing `rounds.jsonl`, reading only what was appended since
/// the last call.
private final class RoundCounter {
    private let file: URL
    private var offset: UInt64 = 0
    private var lines = 0

    init(file: URL) { self.file = file }

    func count() -> Int {
        guard let handle = try? FileHandle(forReadingFrom: file) else { return lines }
        defer { try? handle.close() }
        try? handle.seek(toOffset: offset)
        if let data = try? handle.readToEnd() {
            offset += UInt64(data.count)
            lines += data.reduce(0) { $0 + ($1 == UInt8(ascii: "\n") ? 1 : 0) }
        }
        return lines
    }
}

/// A process's resident set size (VmRSS in /proc/PID/status), in bytes.
private func residentBytes(of pid: Int32) -> Int? {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
    for line in text.split(separator: "\n") where line.hasPrefix("VmRSS:") {
        let fields = line.split(separator: " ", omittingEmptySubsequences: true)
        if fields.count >= 2, let kilobytes = Int(fields[1]) { return kilobytes * 1_024 }
    }
    return nil
}

/// One configuration of part (c) and its runs.
private struct ClusterRow {
    var topology: String
    var workers: Int
    var payloads: String
    var every: Int
    var summaries: [RunSummary] = []
    /// Rounds/s timed as the gloo baseline times itself: after a warm-up round, to the end of
    /// training (the coordinator's records of rounds 1 and R − 1; the last round's record waits for
    /// the final evaluation, which the baseline does not make).
    var timedRuns: [Double] = []

    /// The median over the runs (whole runs, from the start barrier to the last worker's summary).
    var roundsPerSecond: Double { median(summaries.map(\.roundsPerSecond)) }
    var timedAsBaseline: Double { median(timedRuns) }
}

/// The middle value (the mean of the two middle ones for an even count).
private func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    let middle = sorted.count / 2
    return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}
